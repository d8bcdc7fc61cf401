"""The one parameter validator: closed choices, integer ranges and weight pairs, in the house error template.

    <Owner>.<method>: <param> must be <expectation>, got <actual>. <how to fix>
"""

from __future__ import annotations

from enum import Enum
from typing import Iterable

import numpy as np

from embedlab.errors import InvalidInputError


def check_int(value, owner: str, name: str, *, low: int = 1, high: int | None = None, allow_none: bool = False,
              hint: str = "") -> int | None:
    """``value`` as an ``int`` in ``[low, high]`` (``None`` passes when ``allow_none``); bools are refused."""
    if value is None and allow_none:
        return None
    ok = not isinstance(value, bool) and isinstance(value, (int, np.integer))
    if ok and value >= low and (high is None or value <= high):
        return int(value)
    if high is not None:
        expect = f"an int in [{low}, {high}]"
    else:
        expect = "a positive int" if low == 1 else f"an int >= {low}"
    if allow_none:
        expect += " or None"
    raise InvalidInputError(f"{owner}: {name} must be {expect}, got {value!r}.{' ' + hint if hint else ''}")


def check_choice(value, choices: Iterable, owner: str, name: str, *, hint: str = ""):
    """``value`` if it is one of ``choices`` (an ``Enum`` member is compared by its value), else a clear error."""
    choices = list(choices)
    plain = value.value if isinstance(value, Enum) else value
    values = [c.value if isinstance(c, Enum) else c for c in choices]
    try:
        return choices[values.index(plain)]
    except (ValueError, TypeError):
        raise InvalidInputError(
            f"{owner}: {name} must be one of {values}, got {value!r}.{' ' + hint if hint else ''}"
        ) from None


def check_weight_pair(value, owner: str, name: str, sides: str) -> tuple[float, float]:
    """``value`` as 2 non-negative finite floats with a positive sum; ``sides`` names them, e.g. ``"dense, sparse"``."""
    try:
        pair = tuple(float(x) for x in value)
    except (TypeError, ValueError):
        pair = ()
    if len(pair) != 2 or not all(np.isfinite(x) and x >= 0 for x in pair) or sum(pair) <= 0:
        raise InvalidInputError(f"{owner}: {name} must be 2 non-negative numbers ({sides}) with a positive sum, "
                                f"got {value!r}.")
    return pair
