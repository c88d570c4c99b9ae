"""Helpers that keep credentials out of logs, metadata, error text and world-readable files."""

from __future__ import annotations

import hashlib
import os
import secrets as _secrets
from collections.abc import Iterable
from pathlib import Path

REDACTED = "***"


def fingerprint(value: str) -> str:
    """Return a short, non-reversible fingerprint of a secret, safe to log.

    Args:
        value: the secret.

    Returns:
        ``sha256:`` followed by the first 12 hex digits of its SHA-256.
    """
    return "sha256:" + hashlib.sha256(value.encode()).hexdigest()[:12]


def redact(text: str, secret_values: Iterable[str | None]) -> str:
    """Replace every occurrence of each non-empty secret in ``text`` with ``***``."""
    for value in sorted((v for v in secret_values if v), key=len, reverse=True):
        text = text.replace(value, REDACTED)
    return text


def new_password() -> str:
    """A random password for a project-managed server (URL- and passfile-safe)."""
    return _secrets.token_urlsafe(24)


def private_dir(path: Path) -> Path:
    """Create ``path`` (and parents) and make the leaf 0700."""
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(0o700)
    return path


def write_private_file(path: Path, content: str | bytes) -> Path:
    """Write ``content`` to ``path`` created 0600 from the start (never world-readable)."""
    data = content.encode() if isinstance(content, str) else content
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)
    return path
