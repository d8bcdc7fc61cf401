"""Element-wise codecs: float32 (identity), float16, and per-dimension scalar quantisation to 8 or 4 bits.

Scalar quantisation follows Jacob et al. 2018 ("Quantization and Training of Neural Networks for
Efficient Integer-Arithmetic-Only Inference", eq. 1: ``r = S (q - Z)``), with one scale and offset
per *dimension* rather than per tensor: for dimension ``j`` with calibrated range
``[low_j, high_j]`` and ``L = 2**bits - 1`` levels,

    q_j = round(clip((x_j - low_j) / (high_j - low_j), 0, 1) * L),   x̂_j = low_j + q_j (high_j - low_j) / L.

The range is fitted on a calibration sample (``calibration="minmax"``: its min and max;
``"percentile"``: its ``100 - percentile`` and ``percentile`` percentiles, which clips rare outliers
and spends the levels on where the values are). Fit on a sample separate from the vectors you
quantise when you measure quality, so the measurement does not flatter the codec.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from embedlab.compress.base import Codec
from embedlab.errors import InvalidInputError
from embedlab.params import check_choice

_CALIBRATIONS = ("minmax", "percentile")


class Float32Codec(Codec):
    """The identity: codes are the float32 vectors themselves (``4 d`` bytes). The uncompressed reference."""

    kind = "float32"
    code_dtype = np.dtype(np.float32)

    def _fit(self, x):
        pass

    def _encode(self, x):
        return x.copy()

    def _decode(self, codes):
        return np.array(codes, dtype=np.float32)

    @property
    def code_width(self) -> int:
        self._check_fitted("code_width")
        return self.dim_


class Float16Codec(Codec):
    """IEEE half precision (``2 d`` bytes); values beyond ±65504 saturate to ±inf, so embeddings only."""

    kind = "float16"
    code_dtype = np.dtype(np.float16)

    def _fit(self, x):
        pass

    def _encode(self, x):
        return x.astype(np.float16)

    def _decode(self, codes):
        return codes.astype(np.float32)

    @property
    def code_width(self) -> int:
        self._check_fitted("code_width")
        return self.dim_


class ScalarQuantizer(Codec):
    """Per-dimension uniform scalar quantisation to ``bits`` bits (see the module docstring).

    Settings: ``calibration`` ("minmax" or "percentile") and ``percentile`` (the upper percentile,
    in (50, 100], used by "percentile"). Learned: ``low_``, ``high_`` float32 ``[d]``.
    Codes are ``uint8``: one byte per dimension for 8 bits, two dimensions per byte for 4 bits
    (low nibble first), i.e. ``ceil(d * bits / 8)`` bytes per vector.
    """

    bits: ClassVar[int] = 8
    _params = ("calibration", "percentile")
    _arrays = ("low_", "high_")

    def __init__(self, calibration: str = "minmax", percentile: float = 99.9):
        owner = type(self).__name__
        check_choice(calibration, _CALIBRATIONS, owner, "calibration",
                     hint="Use 'minmax' (calibration min/max) or 'percentile'.")
        if isinstance(percentile, bool) or not isinstance(percentile, (int, float)) or not 50 < percentile <= 100:
            raise InvalidInputError(
                f"{owner}: percentile must be a number in (50, 100], got {percentile!r}. 99.9 clips the 0.1% tails."
            )
        self.calibration = calibration
        self.percentile = float(percentile)

    @property
    def levels(self) -> int:
        return 2**self.bits - 1

    def _fit(self, x):
        if self.calibration == "minmax":
            low, high = x.min(axis=0), x.max(axis=0)
        else:
            low, high = np.percentile(x, [100 - self.percentile, self.percentile], axis=0)
        self.low_ = low.astype(np.float32)
        self.high_ = high.astype(np.float32)

    def _steps(self) -> np.ndarray:
        span = self.high_ - self.low_
        return np.where(span > 0, span, 1.0).astype(np.float32) / self.levels

    def _encode(self, x):
        q = np.rint(np.clip((x - self.low_) / self._steps(), 0, self.levels)).astype(np.uint8)
        if self.bits == 8:
            return q
        if q.shape[1] % 2:
            q = np.concatenate([q, np.zeros((len(q), 1), np.uint8)], axis=1)
        return (q[:, 0::2] | (q[:, 1::2] << 4)).astype(np.uint8)

    def _decode(self, codes):
        if self.bits == 8:
            q = codes
        else:
            q = np.empty((len(codes), codes.shape[1] * 2), np.uint8)
            q[:, 0::2] = codes & 0x0F
            q[:, 1::2] = codes >> 4
            q = q[:, : self.dim_]
        return self.low_ + q.astype(np.float32) * self._steps()

    @property
    def code_width(self) -> int:
        self._check_fitted("code_width")
        return (self.dim_ * self.bits + 7) // 8


class Int8Codec(ScalarQuantizer):
    """8-bit per-dimension scalar quantisation: ``d`` bytes per vector (4x smaller than float32)."""

    kind = "int8"
    bits = 8


class Int4Codec(ScalarQuantizer):
    """4-bit per-dimension scalar quantisation: ``ceil(d / 2)`` bytes per vector (8x smaller than float32)."""

    kind = "int4"
    bits = 4
