"""The ``embedlab`` command line: one module per stage, option names as in the Python API.

Every command that reports numbers takes ``--format json`` and then prints exactly one JSON object on stdout
(progress and warnings go to stderr). An embedlab error is one ``error: ...`` line on stderr and exit code 2.
"""

from embedlab.cli.main import app, main

__all__ = ["app", "main"]
