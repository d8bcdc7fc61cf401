"""The Codec contract over every codec, spec parsing, persistence and bad input."""

from __future__ import annotations

import numpy as np
import pytest

from embedlab.compress import (BinaryCodec, ChainCodec, Codec, Int8Codec, OPQCodec, PQCodec, TruncateCodec,
                               codec)
from embedlab.errors import DataFormatError, InvalidInputError, NotFittedError

SPECS = ["float32", "float16", "int8", "int8:calibration=percentile", "int4", "binary", "binary:query=float", "pq:8,6", "opq:8,6,niter=3",
         "truncate:16", "truncate:16+int8", "truncate:16+binary", "truncate:16+pq:4,4"]
D = 32


pytestmark = pytest.mark.usefixtures("one_faiss_thread")


def clustered(rng: np.random.Generator, n: int, d: int = D, clusters: int = 100) -> np.ndarray:
    centers = rng.standard_normal((clusters, d))
    x = centers[rng.integers(0, clusters, n)] + 0.5 * rng.standard_normal((n, d))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    return clustered(rng, 1500), clustered(rng, 800)  # (fit sample, vectors to encode)


@pytest.mark.parametrize("spec", SPECS)
def test_contract(spec, data, tmp_path):
    fit_x, x = data
    c = codec(spec)
    with pytest.raises(NotFittedError, match=r"\.encode: the codec must be fitted first"):
        c.encode(x)
    assert c.fit(fit_x) is c and c.dim_ == D
    codes = c.encode(x)
    assert codes.shape == (len(x), c.code_width) and codes.dtype == c.code_dtype
    assert codes.nbytes == len(x) * c.bytes_per_vector
    decoded = c.decode(codes)
    assert decoded.dtype == np.float32 and decoded.shape == (len(x), c.output_dim)
    assert c.transform_queries(x[:3]).shape == (3, c.output_dim)
    assert codec(c.spec).spec == c.spec  # the spec round-trips
    loaded = Codec.load(c.save(tmp_path / "codec"))
    assert type(loaded) is type(c) and loaded.spec == c.spec
    np.testing.assert_array_equal(loaded.encode(x), codes)
    np.testing.assert_array_equal(loaded.decode(codes), decoded)


@pytest.mark.parametrize("spec,bytes_", [("float32", 128), ("float16", 64), ("int8", 32), ("int4", 16), ("binary", 4),
                                         ("pq:8,8", 8), ("pq:8,4", 4), ("truncate:16", 64), ("truncate:16+int8", 16),
                                         ("truncate:16+binary", 2)])
def test_bytes_per_vector(spec, bytes_, data):
    assert codec(spec).fit(data[0]).bytes_per_vector == bytes_


@pytest.mark.parametrize("spec,floor", [("float16", 0.99), ("int8", 0.97), ("int4", 0.9), ("pq:16,8", 0.85)])
def test_reconstruction_keeps_neighbours(spec, floor, data):
    """Decoded vectors keep the exact top-10 (floor per codec); the calibration set is disjoint from x."""
    fit_x, x = data
    c = codec(spec).fit(fit_x)
    exact = np.argsort(-(x[:100] @ x.T), axis=1)[:, :10]
    approx = np.argsort(-(x[:100] @ c.decode(c.encode(x)).T), axis=1)[:, :10]
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(exact, approx)])
    assert recall >= floor


def test_int8_matches_sentence_transformers_grid(data):
    """With the same ranges our int8 levels equal sentence-transformers' up to its floor-vs-round choice."""
    pytest.importorskip("sentence_transformers")
    from sentence_transformers.util.quantization import quantize_embeddings

    fit_x, x = data
    c = Int8Codec().fit(fit_x)
    theirs = quantize_embeddings(x, "uint8", ranges=np.stack([c.low_, c.high_])).astype(int)
    ours = c.encode(x).astype(int)
    assert np.abs(ours - theirs).max() <= 1


def test_binary_matches_sentence_transformers(data):
    pytest.importorskip("sentence_transformers")
    from sentence_transformers.util.quantization import quantize_embeddings

    x = data[1]
    np.testing.assert_array_equal(BinaryCodec().fit(x).encode(x), quantize_embeddings(x, "ubinary"))


def test_int4_packs_two_per_byte_and_odd_dims(rng):
    x = rng.standard_normal((50, 7)).astype(np.float32)
    c = codec("int4").fit(x)
    assert c.encode(x).shape == (50, 4)
    assert np.abs(c.decode(c.encode(x)) - x).max() <= (x.max(0) - x.min(0)).max() / 15 / 2 + 1e-5


def test_truncate_renormalises(data):
    c = TruncateCodec(8).fit(data[0])
    codes = c.encode(data[1])
    np.testing.assert_allclose(np.linalg.norm(codes, axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(codes, c.transform_queries(data[1]))


def test_chain_fits_each_stage_on_previous_output(data):
    c = codec("truncate:16+int8").fit(data[0])
    assert isinstance(c, ChainCodec) and c.last.dim_ == 16 and c.output_dim == 16 and c.dim_ == D


# ---------------------------------------------------------------------------------------------- bad input
def test_pq_m_must_divide_dimension(data):
    c = PQCodec(m=5)
    with pytest.raises(InvalidInputError, match=r"PQCodec.fit: m must divide the dimension 32, got m=5. Pick one of \[1, 2, 4, 8, 16, 32\]"):
        c.fit(data[0])
    assert not c.is_fitted


@pytest.mark.parametrize("nbits", [0, 17, 2.5, True])
def test_pq_nbits_out_of_range(nbits):
    with pytest.raises(InvalidInputError, match=r"PQCodec: nbits must be an int in \[1, 16\], got"):
        PQCodec(8, nbits)


def test_opq_nbits_out_of_range_from_spec():
    with pytest.raises(InvalidInputError, match=r"OPQCodec: nbits must be an int in \[1, 16\], got 20"):
        codec("opq:8,20")


def test_pq_needs_one_vector_per_centroid(data):
    with pytest.raises(InvalidInputError, match=r"PQCodec.fit: vectors must number at least 2\*\*nbits = 256 .*got 100"):
        PQCodec(8, 8).fit(data[0][:100])
    with pytest.raises(InvalidInputError, match=r"OPQCodec.fit: vectors must number at least 2\*\*nbits = 64"):
        OPQCodec(8, 6).fit(data[0][:10])


@pytest.mark.parametrize("spec", ["int8", "binary", "pq:8,6", "truncate:16+int8"])
def test_decode_rejects_wrong_code_width(spec, data):
    c = codec(spec).fit(data[0])
    codes = c.encode(data[1][:4])
    with pytest.raises(InvalidInputError, match=rf"\.decode: codes must have shape \(n, {c.code_width}\), got \(4, {c.code_width + 1}\)"):
        c.decode(np.concatenate([codes, codes[:, :1]], axis=1))


def test_decode_rejects_wrong_dtype(data):
    c = codec("int8").fit(data[0])
    with pytest.raises(InvalidInputError, match=r"Int8Codec.decode: codes must have dtype uint8, got float32"):
        c.decode(data[1])


def test_encode_rejects_wrong_width(data):
    c = codec("int8").fit(data[0])
    with pytest.raises(InvalidInputError, match=r"Int8Codec.encode: vectors must have shape \(n, 32\), got \(800, 16\)"):
        c.encode(data[1][:, :16])


def test_bad_fit_leaves_fitted_state_unchanged(data):
    c = Int8Codec().fit(data[0])
    low = c.low_.copy()
    with pytest.raises(InvalidInputError, match="must be finite"):
        c.fit(np.full((4, D), np.nan, np.float32))
    np.testing.assert_array_equal(c.low_, low)
    chain = codec("truncate:16+pq:4,8").fit(data[0])
    before = chain.encode(data[1][:5])
    with pytest.raises(InvalidInputError, match="at least 2\\*\\*nbits = 256"):
        chain.fit(data[0][:50])
    np.testing.assert_array_equal(chain.encode(data[1][:5]), before)


@pytest.mark.parametrize("spec,message", [
    ("int9", r"codec: spec must name a known codec, got 'int9' in 'int9'. Known codecs: binary, float16, float32, int4, int8, opq, pq, truncate"),
    ("", r"codec: spec must be a non-empty string, got ''. Known codecs:"),
    ("pq", r"codec: 'pq' needs m, got 'pq' in 'pq'. E.g. pq:64,8"),
    ("truncate:256+", r"codec: spec must not have an empty stage around '\+', got 'truncate:256\+'"),
    ("pq:8,8,0,9", r"codec: 'pq' takes at most 3 plain values \(m, nbits, seed\)"),
    ("int8:bits=4", r"codec: settings of 'int8' must be among \['calibration', 'percentile'\], got 'bits'"),
    ("int8:calibration=", r"codec: setting 'calibration' of 'int8' must have a value"),
    ("int8:median", r"Int8Codec: calibration must be one of \['minmax', 'percentile'\], got 'median'"),
    ("truncate:0", r"TruncateCodec: dim must be a positive int, got 0"),
    ("binary:query=hamming", r"BinaryCodec: query must be one of \['bits', 'float'\], got 'hamming'"),
    ("int8+binary", r"ChainCodec: every stage but the last must be a float-to-float codec \(truncate, float32\), got \['int8'\]"),
])
def test_unparsable_specs(spec, message):
    with pytest.raises(InvalidInputError, match=message):
        codec(spec)


def test_truncate_longer_than_vectors(data):
    with pytest.raises(InvalidInputError, match=r"TruncateCodec.fit: vectors must have at least dim=64 columns, got 32"):
        codec("truncate:64").fit(data[0])


def test_load_rejects_a_non_codec_folder(tmp_path):
    with pytest.raises(DataFormatError, match=r"Codec.load: path must be a folder written by Codec.save"):
        Codec.load(tmp_path)
