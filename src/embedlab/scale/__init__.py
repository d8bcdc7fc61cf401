"""Beyond one machine: streamed, resumable corpus encoding into Parquet shards, in-process or on Ray Data.

``encode_corpus(encoder, corpus, out)`` reads a BEIR folder, JSON lines or Parquet files a shard at a time and
writes ``out/shard-*.parquet`` plus ``out/manifest.json``; ``read_shards(out)`` streams them back.
"""

from embedlab.scale.corpus import Record, read_corpus
from embedlab.scale.encode import encode_corpus
from embedlab.scale.shards import read_shards

__all__ = ["encode_corpus", "read_shards", "read_corpus", "Record"]
