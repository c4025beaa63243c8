"""The machine's sound devices, as PortAudio (through sounddevice) sees them, and the choice of one.

sounddevice is imported here, lazily, so that a server with no PortAudio library, or no sound card at all,
still runs every other part of the desk: :class:`NoAudio` says why the headset is off.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from types import ModuleType
from typing import Literal

log = logging.getLogger(__name__)
Kind = Literal["input", "output"]


class HeadsetError(Exception):
    """The configured headset cannot be used (a device that does not exist, a stream that will not open)."""


class NoAudio(HeadsetError):
    """This machine has no usable sound system: the headset bridge is off and calls run unattended."""


@dataclass(frozen=True)
class Device:
    index: int
    name: str
    host_api: str
    inputs: int
    outputs: int
    default_rate: float
    default_input: bool = False
    default_output: bool = False

    def channels(self, kind: Kind) -> int:
        return self.inputs if kind == "input" else self.outputs

    def describe(self) -> str:
        return f"{self.index} {self.name!r} ({self.host_api})"


def sounddevice() -> ModuleType:
    """The sounddevice module, or :class:`NoAudio` when the PortAudio library is missing."""
    try:
        import sounddevice as sd
    except OSError as exc:  # sounddevice raises OSError when libportaudio2 cannot be loaded
        raise NoAudio(f"PortAudio is not installed ({exc}); install the Debian package libportaudio2") from None
    return sd


def rescan() -> None:
    """Ask PortAudio for the device list again (a headset plugged in, a sound server started)."""
    sd = sounddevice()
    sd._terminate()
    sd._initialize()


def list_devices() -> list[Device]:
    """Every device PortAudio offers, with the system defaults marked."""
    sd = sounddevice()
    try:
        raw = sd.query_devices()
        host_apis = [api["name"] for api in sd.query_hostapis()]
        default_in, default_out = sd.default.device
    except sd.PortAudioError as exc:
        raise NoAudio(f"PortAudio cannot list devices: {exc}") from None
    return [
        Device(
            index=i,
            name=d["name"],
            host_api=host_apis[d["hostapi"]],
            inputs=d["max_input_channels"],
            outputs=d["max_output_channels"],
            default_rate=float(d["default_samplerate"]),
            default_input=i == default_in,
            default_output=i == default_out,
        )
        for i, d in enumerate(raw)
    ]


def choose(choice: int | str, kind: Kind, devices: list[Device]) -> Device:
    """The device ``choice`` names: an index, ``"default"``, an exact name or a unique part of one."""
    usable = [d for d in devices if d.channels(kind) > 0]
    if not usable:
        raise NoAudio(f"no {kind} device: this machine has no sound card (or no sound server is running)")
    available = "; ".join(d.describe() for d in usable)
    if isinstance(choice, int):
        found = [d for d in usable if d.index == choice]
    elif choice == "default":
        found = [d for d in usable if (d.default_input if kind == "input" else d.default_output)] or usable[:1]
    else:
        found = [d for d in usable if d.name == choice] or [d for d in usable if choice.casefold() in d.name.casefold()]
    if len(found) == 1:
        return found[0]
    if not found:
        raise HeadsetError(
            f"[headset] {kind}_device = {choice!r}: no such {kind} device. Available {kind} devices: {available}"
        )
    raise HeadsetError(
        f"[headset] {kind}_device = {choice!r} matches several {kind} devices: "
        + "; ".join(d.describe() for d in found)
        + ". Give the index or the full name."
    )
