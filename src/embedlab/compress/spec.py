"""Parse codec spec strings: ``"int8"``, ``"pq:64,8"``, ``"opq:m=48"``, ``"truncate:256+binary"``.

Grammar: stages joined by ``+``; a stage is ``kind`` or ``kind:arg,arg,...`` where an ``arg`` is a
plain value (filling the codec's settings in order) or ``name=value``. Values are parsed as int,
float, ``true``/``false``, else kept as text.
"""

from __future__ import annotations

import inspect

from embedlab.compress.base import Codec, codec_class, registered_kinds
from embedlab.compress.chain import ChainCodec
from embedlab.errors import InvalidInputError

EXAMPLES = ("float32", "float16", "int8", "int8:calibration=percentile", "int4", "binary", "pq:64,8", "opq:48",
            "truncate:256", "truncate:256+int8")


def _known() -> str:
    kinds = [k for k in registered_kinds() if k != "chain"]
    return f"Known codecs: {', '.join(kinds)}; chain them with '+'. Examples: {', '.join(EXAMPLES)}."


def _value(text: str):
    low = text.lower()
    if low in ("true", "false"):
        return low == "true"
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


def _settings(cls) -> dict[str, inspect.Parameter]:
    if cls.__init__ is object.__init__:
        return {}
    return {n: p for n, p in inspect.signature(cls.__init__).parameters.items()
            if n != "self" and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}


def _stage(text: str, spec: str) -> Codec:
    kind, _, args = text.strip().partition(":")
    kind = kind.strip().lower()
    if not kind or kind == "chain" or kind not in registered_kinds():
        raise InvalidInputError(f"codec: spec must name a known codec, got {kind!r} in {spec!r}. {_known()}")
    cls = codec_class(kind)
    settings = _settings(cls)
    names = list(settings)
    kwargs: dict = {}
    if args.strip():
        for i, arg in enumerate(a.strip() for a in args.split(",")):
            name, eq, value = arg.partition("=")
            if not eq:
                if kwargs.keys() - set(names[:i]) or i >= len(names):
                    raise InvalidInputError(
                        f"codec: {kind!r} takes at most {len(names)} plain values ({', '.join(names)}) before any "
                        f"name=value, got {args!r} in {spec!r}."
                    )
                name, value = names[i], arg
            name = name.strip()
            if name not in names:
                raise InvalidInputError(
                    f"codec: settings of {kind!r} must be among {names}, got {name!r} in {spec!r}."
                )
            if not value.strip():
                raise InvalidInputError(f"codec: setting {name!r} of {kind!r} must have a value, got nothing in {spec!r}.")
            kwargs[name] = _value(value.strip())
    required = [n for n, p in settings.items() if p.default is inspect.Parameter.empty and n not in kwargs]
    if required:
        raise InvalidInputError(f"codec: {kind!r} needs {', '.join(required)}, got {text.strip()!r} in {spec!r}. E.g. "
                                + next((e for e in EXAMPLES if e.startswith(kind + ":")), kind) + ".")
    return cls(**kwargs)


def codec(spec: str) -> Codec:
    """A new, unfitted :class:`Codec` from a spec string (see the module docstring).

    Raises :class:`InvalidInputError` naming every codec that exists when the spec does not parse.
    """
    if isinstance(spec, Codec):
        return spec
    if not isinstance(spec, str) or not spec.strip():
        raise InvalidInputError(f"codec: spec must be a non-empty string, got {spec!r}. {_known()}")
    parts = spec.split("+")
    if any(not p.strip() for p in parts):
        raise InvalidInputError(f"codec: spec must not have an empty stage around '+', got {spec!r}. {_known()}")
    stages = [_stage(p, spec) for p in parts]
    return stages[0] if len(stages) == 1 else ChainCodec(stages)
