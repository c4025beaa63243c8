"""The telephone line's audio format, defined once: 16-bit little-endian mono PCM at 8 kHz in 20 ms frames.

G.711 on the wire decodes to this at the RTP edge; prompts are converted to it, the headset resamples to
and from it, the recorder writes it and the recogniser is fed it. Every module that needs a rate, a frame
size or a frame duration takes it from here.
"""

from __future__ import annotations

from contactcenter.records import Leg

RATE = 8000  # samples per second
SAMPLE_WIDTH = 2  # bytes per sample (16-bit signed, little-endian)
FRAME_SECONDS = 0.02
FRAME_SAMPLES = 160  # RATE * FRAME_SECONDS: what one RTP packet carries
FRAME_BYTES = FRAME_SAMPLES * SAMPLE_WIDTH
SILENT_FRAME = bytes(FRAME_BYTES)

#: The two legs of a call (``Leg``, defined with the records), by who speaks on them: the agent (the desk's
#: side: prompts, the headset microphone) and the customer (the far end); the same names in media, speech
#: and storage.
LEGS: tuple[Leg, Leg] = ("agent", "customer")


def seconds_of(byte_count: int) -> float:
    """Duration of ``byte_count`` bytes of line audio."""
    return byte_count / SAMPLE_WIDTH / RATE
