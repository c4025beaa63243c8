"""G.711 µ-law and A-law, 16-bit PCM in and out (numpy tables; ``audioop`` is gone from Python 3.13).

The telephone line carries 8-bit G.711; everything else in the desk (prompts, recogniser, headset) works
in 16-bit linear PCM, so conversion happens exactly once at the RTP edge.
"""

from __future__ import annotations

import numpy as np

_BIAS = 0x84
_CLIP = 32635


def _ulaw_decode_table() -> np.ndarray:
    codes = ~np.arange(256, dtype=np.int32) & 0xFF
    sign = codes & 0x80
    exponent = (codes >> 4) & 0x07
    mantissa = codes & 0x0F
    magnitude = (((mantissa << 3) + _BIAS) << exponent) - _BIAS
    return np.where(sign != 0, -magnitude, magnitude).astype(np.int16)


def _alaw_decode_table() -> np.ndarray:
    codes = np.arange(256, dtype=np.int32) ^ 0x55
    sign = codes & 0x80
    exponent = (codes >> 4) & 0x07
    mantissa = codes & 0x0F
    magnitude = np.where(exponent == 0, (mantissa << 4) + 8, ((mantissa << 4) + 0x108) << (exponent - 1))
    return np.where(sign != 0, magnitude, -magnitude).astype(np.int16)


def _encode_table(decode: np.ndarray) -> np.ndarray:
    """For every 16-bit value, the code whose decoded value is nearest (exact inverse of the decode table)."""
    order = np.argsort(decode.astype(np.int32), kind="stable")
    levels = decode.astype(np.int32)[order]
    values = np.arange(-32768, 32768, dtype=np.int32)
    index = np.clip(np.searchsorted(levels, values), 1, len(levels) - 1)
    nearer_left = (values - levels[index - 1]) <= (levels[index] - values)
    chosen = np.where(nearer_left, index - 1, index)
    return order[chosen].astype(np.uint8)


ULAW_TO_PCM = _ulaw_decode_table()
ALAW_TO_PCM = _alaw_decode_table()
PCM_TO_ULAW = _encode_table(ULAW_TO_PCM)
PCM_TO_ALAW = _encode_table(ALAW_TO_PCM)


def ulaw_to_pcm16(data: bytes) -> bytes:
    return ULAW_TO_PCM[np.frombuffer(data, dtype=np.uint8)].astype("<i2").tobytes()


def alaw_to_pcm16(data: bytes) -> bytes:
    return ALAW_TO_PCM[np.frombuffer(data, dtype=np.uint8)].astype("<i2").tobytes()


def pcm16_to_ulaw(data: bytes) -> bytes:
    return PCM_TO_ULAW[np.frombuffer(data, dtype="<i2").astype(np.int32) + 32768].tobytes()


def pcm16_to_alaw(data: bytes) -> bytes:
    return PCM_TO_ALAW[np.frombuffer(data, dtype="<i2").astype(np.int32) + 32768].tobytes()
