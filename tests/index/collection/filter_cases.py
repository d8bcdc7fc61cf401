"""Random metadata and random filters over it (hypothesis), shared by the tests that check a filter path against
the local evaluator: the Milvus translation (``test_milvus.py``) and the payload indexes (``test_payload.py``)."""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

from embedlab.index import Filter

D = 8
WORDS = ["noun", "verb", 'say "hi"', "back\\slash", "new\nline", "tab\tx", "año", "日本", "it's", ""]
INTS = [0, 1, -3, 7, 2**53 + 1, -(2**63), 2**63 - 1]
FLOATS = [0.0, 0.5, -1.25, 1e23, 3.0]


def _items(n=240, seed=0):
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        m = {}
        if rng.random() < 0.8:
            m["s"] = WORDS[rng.integers(len(WORDS))]
        if rng.random() < 0.8:
            m["n"] = INTS[rng.integers(len(INTS))]
        if rng.random() < 0.7:
            m["f"] = FLOATS[rng.integers(len(FLOATS))]
        if rng.random() < 0.7:
            m["b"] = bool(rng.random() < 0.5)
        if rng.random() < 0.7:
            m["tags"] = [WORDS[i] for i in rng.choice(len(WORDS), rng.integers(0, 3), replace=False)]
        out.append(m)
    return rng.standard_normal((n, D)).astype(np.float32), out


SCHEMA = {"s": "str", "n": "int", "f": "float", "b": "bool", "tags": "list[str]"}


def _leaf(field, draw):
    if field == "s":
        op = draw(st.sampled_from(["eq", "ne", "in", "exists"]))
        vals = st.sampled_from(WORDS)
    elif field == "tags":
        op = draw(st.sampled_from(["contains", "exists"]))
        vals = st.sampled_from(WORDS)
    elif field == "b":
        op = draw(st.sampled_from(["eq", "ne", "exists"]))
        vals = st.booleans()
    else:
        op = draw(st.sampled_from(["eq", "ne", "in", "range", "exists"]))
        vals = st.sampled_from(INTS if field == "n" else FLOATS)
    if op == "eq":
        return Filter.eq(field, draw(vals))
    if op == "ne":
        return Filter.ne(field, draw(vals))
    if op == "in":
        return Filter.in_(field, draw(st.lists(vals, min_size=1, max_size=4)))
    if op == "contains":
        return Filter.contains(field, draw(vals))
    if op == "exists":
        return Filter.exists(field)
    bounds = draw(st.fixed_dictionaries({}, optional={"gt": vals, "le": vals}))
    return Filter.range(field, **bounds) if bounds else Filter.range(field, ge=draw(vals))


@st.composite
def filters(draw, depth=3):
    if depth == 0 or draw(st.integers(0, 2)) == 0:
        return _leaf(draw(st.sampled_from(["s", "n", "f", "b", "tags"])), draw)
    kind = draw(st.sampled_from(["and", "or", "not"]))
    if kind == "not":
        return ~draw(filters(depth - 1))
    children = draw(st.lists(filters(depth - 1), min_size=2, max_size=3))
    out = children[0]
    for c in children[1:]:
        out = (out & c) if kind == "and" else (out | c)
    return out
