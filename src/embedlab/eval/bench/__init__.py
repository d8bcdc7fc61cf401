"""Benchmarks users run on their own data (a BEIR folder): :mod:`.compression` measures every codec, with and
without rescoring; :mod:`.compression_report` writes its table, JSON, Pareto PNG and HTML report."""
