"""Chains of codecs: float-to-float stages (truncation) followed by one quantiser, e.g. ``"truncate:256+int8"``.

Every stage but the last must map vectors to float vectors (``TruncateCodec``, ``Float32Codec``);
each stage is fitted on the previous stage's output. Codes, ``code_width`` and ``decode`` are the last
stage's; queries pass through every stage's ``transform_queries``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from embedlab.compress.base import FORMAT_VERSION, Codec
from embedlab.compress.scalar import Float32Codec
from embedlab.compress.truncate import TruncateCodec
from embedlab.errors import InvalidInputError

_PREFIX_KINDS = (TruncateCodec, Float32Codec)


class ChainCodec(Codec):
    """``stages[0] -> ... -> stages[-1]``; see the module docstring. Fitted when every stage is."""

    kind = "chain"

    def __init__(self, stages: list[Codec]):
        stages = list(stages)
        if len(stages) < 2 or not all(isinstance(s, Codec) for s in stages):
            raise InvalidInputError(f"ChainCodec: stages must be a list of at least two codecs, got {stages!r}.")
        bad = [s.spec for s in stages[:-1] if not isinstance(s, _PREFIX_KINDS)]
        if bad:
            raise InvalidInputError(
                f"ChainCodec: every stage but the last must be a float-to-float codec (truncate, float32), got {bad}. "
                "Put the quantiser last, e.g. 'truncate:256+int8'."
            )
        self.stages = stages
        self.code_dtype = stages[-1].code_dtype
        if all(s.is_fitted for s in stages):
            self.dim_ = stages[0].dim_

    @property
    def spec(self) -> str:
        return "+".join(s.spec for s in self.stages)

    def check_dim(self, dim: int, owner: str | None = None) -> int:
        for stage in self.stages:
            dim = stage.check_dim(dim, owner)
        return dim

    def _fit(self, x):
        self.check_dim(x.shape[1])
        fitted = [type(s).__new__(type(s)) for s in self.stages]
        for new, old in zip(fitted, self.stages):  # fit copies so a failure leaves the chain unchanged
            new.__dict__.update({k: v for k, v in old.__dict__.items() if not k.endswith("_")})
        for stage in fitted[:-1]:
            x = stage.fit(x).transform_queries(x)
        fitted[-1].fit(x)
        self.stages = fitted

    def _through_prefix(self, x: np.ndarray) -> np.ndarray:
        for stage in self.stages[:-1]:
            x = stage.transform_queries(x)
        return x

    def _encode(self, x):
        return self.stages[-1].encode(self._through_prefix(x))

    def _decode(self, codes):
        return self.stages[-1].decode(codes)

    def transform_queries(self, queries):
        return self.stages[-1].transform_queries(self._through_prefix(super().transform_queries(queries)))

    @property
    def output_dim(self) -> int:
        self._check_fitted("output_dim")
        return self.stages[-1].output_dim

    @property
    def code_width(self) -> int:
        return self.stages[-1].code_width

    @property
    def last(self) -> Codec:
        """The quantiser at the end of the chain."""
        return self.stages[-1]

    def _write(self, folder: Path) -> None:
        for i, stage in enumerate(self.stages):
            (folder / f"stage{i}").mkdir()
            stage._write(folder / f"stage{i}")
        manifest = {"format_version": FORMAT_VERSION, "kind": self.kind, "spec": self.spec,
                    "stages": len(self.stages), "dim_": self.dim_}
        (folder / "codec.json").write_text(json.dumps(manifest, indent=2) + "\n")

    @classmethod
    def _read(cls, folder: Path, manifest: dict) -> "ChainCodec":
        return cls([Codec.load(folder / f"stage{i}") for i in range(int(manifest["stages"]))])
