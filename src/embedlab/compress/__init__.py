"""Vector codecs (vectors -> codes -> vectors), code search and rescoring.

``codec("int8")``, ``codec("pq:64,8")``, ``codec("truncate:256+binary")`` build a :class:`Codec`;
``fit`` on a calibration sample, then ``encode``/``decode``. :mod:`embedlab.compress.search`
searches codes (Hamming for binary, asymmetric look-up tables for PQ, decode-and-multiply otherwise)
and rescores the best ``k * oversample`` candidates with higher-precision vectors.
"""

from embedlab.compress.base import Codec
from embedlab.compress.binary import BinaryCodec
from embedlab.compress.chain import ChainCodec
from embedlab.compress.pq import OPQCodec, PQCodec
from embedlab.compress.scalar import Float16Codec, Float32Codec, Int4Codec, Int8Codec, ScalarQuantizer
from embedlab.compress.search import CodeSearcher, rescore, search_codes
from embedlab.compress.spec import codec
from embedlab.compress.truncate import TruncateCodec

__all__ = ["Codec", "codec", "Float32Codec", "Float16Codec", "ScalarQuantizer", "Int8Codec", "Int4Codec",
           "BinaryCodec", "PQCodec", "OPQCodec", "TruncateCodec", "ChainCodec", "CodeSearcher", "search_codes",
           "rescore"]
