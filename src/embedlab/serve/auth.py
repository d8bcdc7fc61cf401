"""API keys: bearer tokens with ``read`` / ``write`` scopes and optional per-collection grants.

Keys come from a JSON file or the ``EMBEDLAB_API_KEYS`` environment variable, both shaped
``{"keys": [{"key": "...", "scopes": ["read", "write"], "collections": ["*"], "name": "ci"}]}``
(``collections`` defaults to every collection, ``name`` labels the key in logs). Only a SHA-256 digest of
each key is kept; a presented token is hashed and compared with every digest by :func:`hmac.compare_digest`,
so the time taken does not depend on how much of a key matched. Keys never reach a log line.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from dataclasses import dataclass
from pathlib import Path

from embedlab.errors import DataFormatError

SCOPES = ("read", "write")
ENV = "EMBEDLAB_API_KEYS"


@dataclass(frozen=True)
class ApiKey:
    name: str
    digest: bytes
    scopes: frozenset
    collections: frozenset | None  # None: every collection

    def allows(self, scope: str, collection: str | None) -> bool:
        return scope in self.scopes and (collection is None or self.collections is None
                                         or collection in self.collections)


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def parse_keys(text: str, source: str) -> tuple[ApiKey, ...]:
    """The keys in ``text`` (the JSON shape above); ``source`` names it in errors."""
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataFormatError(f"serve: {source} must be JSON like {{\"keys\": [{{\"key\": ..., \"scopes\": "
                              f"[\"read\"]}}]}}, got invalid JSON ({exc.msg} at line {exc.lineno}).") from None
    entries = doc.get("keys") if isinstance(doc, dict) else None
    if not isinstance(entries, list):
        raise DataFormatError(f"serve: {source} must hold an object with a \"keys\" list, got {type(doc).__name__}.")
    keys = []
    for i, entry in enumerate(entries):
        where = f"{source} keys[{i}]"
        if not isinstance(entry, dict) or not isinstance(entry.get("key"), str) or len(entry["key"]) < 16:
            raise DataFormatError(f"serve: {where} must be an object with a \"key\" string of at least 16 "
                                  "characters. Generate one with: python -c 'import secrets; print(secrets.token_urlsafe(32))'")
        unknown = set(entry) - {"key", "scopes", "collections", "name"}
        scopes = entry.get("scopes", ["read"])
        collections = entry.get("collections", ["*"])
        if unknown or not isinstance(scopes, list) or not set(scopes) <= set(SCOPES) or not isinstance(collections, list):
            raise DataFormatError(f"serve: {where} must have scopes within {list(SCOPES)} and a collections list "
                                  f"(no other fields), got fields {sorted(entry)} and scopes {scopes!r}.")
        keys.append(ApiKey(str(entry.get("name", f"key{i}")), _digest(entry["key"]), frozenset(scopes),
                           None if "*" in collections else frozenset(map(str, collections))))
    return tuple(keys)


def load_keys(path: str | os.PathLike | None = None, *, environ=os.environ) -> tuple[ApiKey, ...]:
    """The keys of the file at ``path`` plus those in ``$EMBEDLAB_API_KEYS`` (either may be absent)."""
    keys: tuple[ApiKey, ...] = ()
    if path is not None:
        keys += parse_keys(Path(path).read_text(), str(path))
    if environ.get(ENV):
        keys += parse_keys(environ[ENV], f"${ENV}")
    return keys


def find_key(keys: tuple[ApiKey, ...], token: str) -> ApiKey | None:
    """The key whose digest matches ``token``; every digest is compared, each in constant time."""
    presented = _digest(token)
    found = None
    for key in keys:
        if hmac.compare_digest(key.digest, presented):
            found = key
    return found
