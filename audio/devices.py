"""Find the microphone and speaker to use, and say which ones exist when the choice fails.

sounddevice is imported inside the functions: PortAudio lists the devices once, when it
is first loaded, so importing it early (before a sound server is up) would freeze an
empty or stale list for the life of the process.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Literal

from engines.errors import AudioError

Direction = Literal["input", "output"]


@dataclass(frozen=True)
class DeviceInfo:
    index: int
    name: str
    inputs: int
    outputs: int
    default_rate: int

    def channels(self, direction: Direction) -> int:
        return self.inputs if direction == "input" else self.outputs

    def __str__(self) -> str:
        return (f"{self.index}: {self.name} ({self.inputs} in, {self.outputs} out, "
                f"{self.default_rate} Hz)")


def import_sounddevice() -> ModuleType:
    """sounddevice, or an AudioError that says how to install PortAudio."""
    try:
        import sounddevice
    except (OSError, ImportError) as e:  # OSError: the PortAudio library itself is missing
        raise AudioError(
            f"The PortAudio sound library is not available ({e}), so no audio device can "
            "be used.",
            "Install it (Debian/Ubuntu: `apt install libportaudio2`), or use WAV files.",
        ) from e
    module: ModuleType = sounddevice  # untyped library: name the type once, here
    return module


def open_stream(device: DeviceInfo, direction: Direction, rate: int, block_ms: int,
                callback: Callable[..., None]) -> Any:
    """A started low-latency float32 PortAudio stream, or an AudioError in plain words."""
    sd = import_sounddevice()
    kind = sd.InputStream if direction == "input" else sd.OutputStream
    stream = None
    try:
        stream = kind(
            device=device.index,
            samplerate=rate,
            # Stereo at most: devices that report 32 channels (PulseAudio's) only upmix.
            channels=min(device.channels(direction), 2),
            dtype="float32",
            blocksize=round(rate * block_ms / 1000),
            latency="low",
            callback=callback,
        )
        stream.start()
    except sd.PortAudioError as e:
        if stream is not None:
            stream.close()
        verb, flag = ("record from", "--input-device") if direction == "input" else (
            "play sound on", "--output-device")
        raise AudioError(
            f"Cannot {verb} {device.name}: {e}.",
            f"Check that it is plugged in and not in use, or choose another with {flag}.",
        ) from e
    return stream


def rescan() -> None:
    """Make PortAudio list devices afresh (it enumerates once, at start-up), so a device
    plugged in or out since then is seen. Only call it with no stream open."""
    sd = import_sounddevice()
    sd._terminate()
    sd._initialize()


def _info(d: dict[str, Any]) -> DeviceInfo:
    return DeviceInfo(int(d["index"]), str(d["name"]), int(d["max_input_channels"]),
                      int(d["max_output_channels"]), round(float(d["default_samplerate"])))


def list_devices() -> list[DeviceInfo]:
    """Every device PortAudio can see, in its own numbering."""
    sd = import_sounddevice()
    return [_info(d) for d in sd.query_devices()]


def pick_device(spec: str | int | None, direction: Direction) -> DeviceInfo:
    """Resolve a user's choice: a device number, part of a name, or None (or "") for the
    default.

    A name that matches several devices is refused rather than guessed, because a wrong
    microphone fails silently; exact names win over partial ones.
    """
    devices = [d for d in list_devices() if d.channels(direction) > 0]
    flag = f"--{direction}-device"
    if not devices:
        raise AudioError(
            f"No audio {direction} device was found.",
            "Check that a sound server (PulseAudio or PipeWire) is running and that "
            "`libasound2-plugins` is installed, or use WAV files instead.",
        )
    if spec is None or (isinstance(spec, str) and not spec.strip()):
        return _default(devices, direction)
    if isinstance(spec, int) or spec.strip().isdigit():
        index = int(spec)
        for d in devices:
            if d.index == index:
                return d
        raise _no_match(f"There is no {direction} device number {index}.", devices, flag)
    wanted = spec.strip().casefold()
    exact = [d for d in devices if d.name.casefold() == wanted]
    matches = exact or [d for d in devices if wanted in d.name.casefold()]
    if len(matches) == 1:
        return matches[0]
    if matches:
        raise _no_match(f"{spec!r} matches several {direction} devices.", matches, flag)
    raise _no_match(f"No {direction} device is called {spec!r}.", devices, flag)


def _default(devices: list[DeviceInfo], direction: Direction) -> DeviceInfo:
    sd = import_sounddevice()
    index = sd.default.device[0 if direction == "input" else 1]
    for d in devices:
        if d.index == index:
            return d
    return devices[0]  # PortAudio has no default (-1): any working device beats none


def _no_match(message: str, devices: list[DeviceInfo], flag: str) -> AudioError:
    listing = "\n".join(f"    {d}" for d in devices)
    return AudioError(
        f"{message} Available:\n{listing}",
        f"Choose one by number or name, e.g. `{flag} {devices[0].index}` or "
        f"`{flag} \"{devices[0].name}\"`.",
    )
