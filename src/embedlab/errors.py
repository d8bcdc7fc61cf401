"""The embedlab error hierarchy.

Every error is an :class:`EmbedlabError` and also inherits the matching built-in exception, so an
ordinary ``except ValueError`` keeps working. Messages follow one template::

    <Owner>.<method>: <param> must be <expectation>, got <actual>. <how to fix>
"""

from __future__ import annotations


class EmbedlabError(Exception):
    """Base class of every error raised by embedlab."""


class InvalidInputError(EmbedlabError, ValueError):
    """An argument has the wrong type, shape, range or content."""


class DataFormatError(EmbedlabError, ValueError):
    """A file or stored object is malformed; the message names the file and line."""


class ModelNotFoundError(EmbedlabError, FileNotFoundError):
    """A model name or folder could not be resolved to a local model (nothing is ever downloaded)."""


class NotFoundError(EmbedlabError, KeyError):
    """A requested id, field or object does not exist."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""


class UnsupportedError(EmbedlabError, NotImplementedError):
    """A valid request that this component cannot honour (it is never silently ignored)."""


class NotFittedError(EmbedlabError, RuntimeError):
    """A component was used before ``fit``."""


class CancelledError(EmbedlabError, RuntimeError):
    """A long operation was cancelled through its progress callback."""


class ConflictError(EmbedlabError, RuntimeError):
    """The operation conflicts with existing state (an id that exists, a lock held by another writer)."""


class UnavailableError(EmbedlabError, ConnectionError):
    """A service the call needs (a Milvus server, a Ray cluster) did not answer within its time limit."""
