"""A private PulseAudio server with a virtual microphone and speaker, for real-device tests.

Two null sinks share one clock: "parley_mic", whose monitor is the default source (what
the app records), and "parley_speaker", the default sink (where the app plays). A test
plays a user's words into the mic with paplay and records the app's voice from the
speaker's monitor, through the same PortAudio/ALSA/PulseAudio path a desktop uses.

`speaker_heard_by_mic` adds the room: a loopback from the speaker's monitor into the mic,
attenuated, so the app hears its own voice as it would from loudspeakers.

Everything lives in a temp dir and is removed on exit; nothing is written to $HOME.
"""

from __future__ import annotations

import bisect
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType

import numpy as np
import soundfile as sf

from tests.waiting import blocking_until

MIC = "parley_mic"
SPEAKER = "parley_speaker"
RATE = 48000
_FAINTEST = 32
"""Of 32768: -60 dBFS. A null sink is exactly 0 while nothing plays."""
_TOOLS = ("pulseaudio", "pactl", "paplay", "parec")
_INSTALL = "apt-get install pulseaudio pulseaudio-utils libasound2-plugins libportaudio2"


class Recording:
    """Raw capture of a PulseAudio source into a 16-bit mono WAV, with arrival times.

    parec writes raw samples to a pipe that a thread drains, so each read can be
    timestamped: `time_of` maps a sample back to the monotonic clock for latency checks.
    """

    def __init__(self, source: str, path: Path, env: dict[str, str], rate: int = RATE) -> None:
        self.path = path
        self.rate = rate
        self.frames = 0
        self.last_sound: int | None = None
        """The last frame so far louder than the faintest sound (PulseAudio's silence is 0)."""
        self._arrivals: list[tuple[int, float]] = []
        """(frames received so far, monotonic time of that read)."""
        self._file = sf.SoundFile(path, "w", samplerate=rate, channels=1, subtype="PCM_16")
        self._proc = subprocess.Popen(
            ["parec", "-d", source, "--raw", "--format=s16le", f"--rate={rate}",
             "--channels=1", "--latency-msec=10"],
            stdout=subprocess.PIPE, env=env,
        )
        self._thread = threading.Thread(target=self._pump, daemon=True)
        self._thread.start()

    def _pump(self) -> None:
        assert self._proc.stdout is not None
        fd = self._proc.stdout.fileno()
        rest = b""
        while chunk := os.read(fd, 4096):
            now = time.monotonic()
            data = rest + chunk
            usable = len(data) // 2 * 2
            rest = data[usable:]
            samples = np.frombuffer(data[:usable], dtype="<i2")
            self._file.write(samples)
            sounding = np.flatnonzero(np.abs(samples) > _FAINTEST)
            if sounding.size:
                self.last_sound = self.frames + int(sounding[-1])
            self.frames += samples.size
            self._arrivals.append((self.frames, now))

    def wait_flowing(self, timeout: float = 5.0) -> None:
        """Block until samples arrive, so nothing a test plays next is missed."""
        deadline = time.monotonic() + timeout
        while self.frames == 0:
            if time.monotonic() > deadline:
                raise RuntimeError(f"parec recorded nothing within {timeout} s")
            time.sleep(0.005)

    def wait_for_quiet_after_sound(self, since: float, quiet_s: float = 0.2,
                                   timeout: float = 10) -> None:
        """Block until the recording holds a sound and then `quiet_s` of silence, recorded
        at least `quiet_s` after `since` (when the app had handed the device everything it
        played): the whole sound has reached the recording, what the device still held
        included, and a stall's gap in the sound is not taken for its end."""
        def quiet() -> bool:
            last, frames = self.last_sound, self.frames
            return (last is not None and frames - last > quiet_s * self.rate
                    and self.time_of(frames - 1) > since + quiet_s)

        blocking_until(quiet, timeout, lambda: (
            "a sound on the speaker" if self.last_sound is None else
            f"the speaker to fall quiet ({(self.frames - self.last_sound) / self.rate:.2f} s "
            f"of quiet after its last sound)"))

    def time_of(self, frame: int) -> float:
        """When `frame` was captured, on time.monotonic()'s clock (±1 pipe read)."""
        i = bisect.bisect_left(self._arrivals, frame + 1, key=lambda a: a[0])
        i = min(i, len(self._arrivals) - 1)
        total, at = self._arrivals[i]
        return at - (total - 1 - frame) / self.rate

    @property
    def pid(self) -> int:
        return self._proc.pid

    def frame_at(self, when: float) -> int:
        """The frame captured at `when` (time.monotonic()), the inverse of `time_of`."""
        i = bisect.bisect_left(self._arrivals, when, key=lambda a: a[1])
        if i >= len(self._arrivals):
            return self.frames
        total, at = self._arrivals[i]
        return max(0, total - 1 - round((at - when) * self.rate))

    def stop(self) -> Path:
        """Stop recording and finish the WAV; returns its path."""
        if self._proc.poll() is None:
            self._proc.terminate()
        self._proc.wait(timeout=5)
        self._thread.join(timeout=5)
        if self._proc.stdout is not None:
            self._proc.stdout.close()
        self._file.close()
        return self.path


class PulseAudio:
    """Start with `with PulseAudio() as pa:`; the server, its env vars and files go on exit."""

    def __init__(self) -> None:
        self.dir: Path | None = None
        self.env: dict[str, str] = {}
        """os.environ plus the server's variables: pass it to subprocesses."""
        self._saved: dict[str, str | None] = {}
        self._keepers: list[subprocess.Popen[bytes]] = []
        self._children: list[subprocess.Popen[bytes] | Recording] = []

    def start(self) -> PulseAudio:
        missing = [t for t in _TOOLS if shutil.which(t) is None]
        if missing:
            raise RuntimeError(f"PulseAudio tools are missing ({', '.join(missing)}); the "
                               f"audio device tests need them. Install: {_INSTALL}")
        try:
            self._start()
        except BaseException:
            self.stop()  # no half-started server, stray env vars or temp dirs
            raise
        return self

    def _start(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="parley-pulse-"))
        xdg = self.dir / "xdg"
        xdg.mkdir(mode=0o700)
        runtime = xdg / "pulse"
        config = self.dir / "config"
        variables = {
            "XDG_RUNTIME_DIR": str(xdg),
            "PULSE_RUNTIME_PATH": str(runtime),
            "PULSE_SERVER": f"unix:{runtime}/native",
            # The daemon writes its cookie under XDG_CONFIG_HOME; clients that are told
            # where it is do not create ~/.config/pulse of their own.
            "PULSE_COOKIE": str(config / "pulse" / "cookie"),
        }
        for name, value in variables.items():
            self._saved[name] = os.environ.get(name)
            os.environ[name] = value
        self.env = dict(os.environ)
        script = self.dir / "parley.pa"
        script.write_text(
            f"load-module module-native-protocol-unix auth-anonymous=1 socket={runtime}/native\n"
            f"load-module module-null-sink sink_name={MIC} rate={RATE}\n"
            f"load-module module-null-sink sink_name={SPEAKER} rate={RATE}\n"
            f"set-default-sink {SPEAKER}\n"
            f"set-default-source {MIC}.monitor\n"
        )
        log = self.dir / "pulse.log"
        started = subprocess.run(
            ["pulseaudio", "-n", "-F", str(script), "--daemonize=yes", "--exit-idle-time=-1",
             "--use-pid-file=yes", f"--log-target=file:{log}"],
            env=self._daemon_env(), capture_output=True, timeout=20,
        )
        if started.returncode != 0 or not self._wait_ready(10.0):
            text = log.read_text(errors="replace") if log.exists() else started.stderr.decode()
            raise RuntimeError(f"PulseAudio did not start:\n{text[-2000:]}")
        # A null sink with no low-latency client renders in 2 s blocks: the first callbacks
        # of a new stream come up to 2 s late. A recorder on each monitor keeps both sinks
        # in short blocks; the block already under way has to be waited out once.
        for sink in (MIC, SPEAKER):
            self._keepers.append(subprocess.Popen(
                ["parec", "-d", f"{sink}.monitor", "--raw", "--latency-msec=10"],
                stdout=subprocess.DEVNULL, env=self.env))
        time.sleep(2.1)
        _rescan_portaudio()

    def _daemon_env(self) -> dict[str, str]:
        assert self.dir is not None
        return {**self.env, "XDG_CONFIG_HOME": str(self.dir / "config")}

    def _wait_ready(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if subprocess.run(["pactl", "info"], env=self.env,
                              capture_output=True).returncode == 0:
                return True
            time.sleep(0.05)
        return False

    def play_into_mic(self, wav_path: str | Path, *, wait: bool = True) -> subprocess.Popen[bytes]:
        """Play a file into the virtual microphone, as if the user spoke it.

        With `wait` this returns once the file has been played (checking paplay succeeded);
        otherwise at once, with the running paplay.
        """
        proc = subprocess.Popen(["paplay", "-d", MIC, str(wav_path)], env=self.env,
                                stderr=subprocess.PIPE)
        if not wait:
            self._children.append(proc)
            return proc
        _, err = proc.communicate(timeout=600)
        if proc.returncode != 0:
            raise RuntimeError(f"paplay {wav_path} failed: {err.decode(errors='replace')}")
        return proc

    def mic_listeners(self) -> int:
        """How many streams record from the virtual microphone, this harness's own aside."""
        sources = json.loads(self._pactl("-f", "json", "list", "sources"))
        mic = next(s["index"] for s in sources if s["name"] == f"{MIC}.monitor")
        ours = {str(keeper.pid) for keeper in self._keepers} | {
            str(child.pid) for child in self._children if isinstance(child, Recording)}
        return sum(1 for out in json.loads(self._pactl("-f", "json", "list", "source-outputs"))
                   if out["source"] == mic
                   and out["properties"].get("application.process.id") not in ours)

    def wait_for_mic_listener(self, timeout: float = 60) -> None:
        """Block until the app under test records from the virtual microphone: what is
        played into it from then on is heard (an app may say it listens a moment before
        its microphone is open)."""
        blocking_until(self.mic_listeners, timeout,
                       "the app to open the microphone (nothing records from it)", 0.1)

    @contextlib.contextmanager
    def speaker_heard_by_mic(self, volume: float = 0.5) -> Iterator[None]:
        """While inside, what the app plays also reaches its microphone (30 ms later),
        at `volume` (PulseAudio's cubic scale: 0.5 is about -18 dB)."""
        module = self._pactl("load-module", "module-loopback", f"source={SPEAKER}.monitor",
                             f"sink={MIC}", "latency_msec=30", "source_dont_move=true",
                             "sink_dont_move=true").strip()
        try:
            listing = self._pactl("list", "sink-inputs").split("Sink Input #")[1:]
            ours = [entry.split()[0] for entry in listing
                    if f"Owner Module: {module}\n" in entry]
            if not ours:
                raise RuntimeError(f"the loopback (module {module}) has no sink input")
            self._pactl("set-sink-input-volume", ours[0], f"{round(volume * 65536)}")
            yield
        finally:
            self._pactl("unload-module", module)

    def _pactl(self, *args: str) -> str:
        done = subprocess.run(["pactl", *args], env=self.env, capture_output=True, text=True,
                              timeout=20)
        if done.returncode != 0:
            raise RuntimeError(f"pactl {' '.join(args)} failed: {done.stderr}")
        return done.stdout

    def record_speaker(self, wav_path: str | Path) -> Recording:
        """Record what the app plays; call `stop()` on the handle to finish the WAV."""
        return self._record(f"{SPEAKER}.monitor", wav_path)

    def record_mic(self, wav_path: str | Path) -> Recording:
        """Record what the app hears: the user's words (and the room's echo, if any)."""
        return self._record(f"{MIC}.monitor", wav_path)

    def _record(self, source: str, wav_path: str | Path) -> Recording:
        rec = Recording(source, Path(wav_path), self.env)
        self._children.append(rec)
        return rec

    def stop(self) -> None:
        for child in self._children:
            if isinstance(child, Recording):
                child.stop()
            elif child.poll() is None:
                child.kill()
                child.wait()
        for keeper in self._keepers:
            keeper.terminate()
            keeper.wait()
        self._children.clear()
        self._keepers.clear()
        if self.dir is not None:
            self._kill_daemon()
        for name, value in self._saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        self._saved.clear()
        if self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None

    def _kill_daemon(self) -> None:
        """Stop our daemon only: `--kill` finds it through our runtime dir's pid file, and
        without that file there is nothing of ours to stop."""
        assert self.dir is not None
        pid_file = self.dir / "xdg" / "pulse" / "pid"
        if not pid_file.exists():
            return
        pid = int(pid_file.read_text().split()[0])
        subprocess.run(["pulseaudio", "--kill"], env=self._daemon_env(), capture_output=True,
                       timeout=10)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and _alive(pid):
            time.sleep(0.05)
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)

    def __enter__(self) -> PulseAudio:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _alive(pid: int) -> bool:
    """True while `pid` runs; a zombie waiting for init to reap it counts as gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _rescan_portaudio() -> None:
    """PortAudio lists devices once, when initialised: if sounddevice was imported before
    the server existed, re-initialise it so it sees the new devices."""
    sd = sys.modules.get("sounddevice")
    if sd is not None:
        sd._terminate()
        sd._initialize()
