"""Reading an env file: :class:`EnvFile`, :func:`read_env_file` and :func:`parse_env_text`.

The bytes are size-checked, decoded as UTF-8 and newline-normalised here; the syntax itself is
parsed by :mod:`cartrita_assets.envfile.syntax`.
"""

from __future__ import annotations

import codecs
import hashlib
from dataclasses import dataclass
from pathlib import Path

from cartrita_assets.envfile.errors import _env_error
from cartrita_assets.envfile.syntax import _Parser

MAX_ENV_FILE_BYTES = 1024 * 1024
"""Largest env file accepted (1 MiB); anything bigger is certainly not a v1 ``.env`` file."""

POINT_AT_FILE = "set CARTRITA_V1_ENV_FILE or pass --env-file with the path of the v1 .env file"


@dataclass(frozen=True, repr=False)
class EnvFile:
    """A parsed env file.

    Attributes:
        source: where it came from (the path, or the name given to :func:`parse_env_text`).
        values: key -> value, in file order, after unquoting and interpolation.
        lines: key -> 1-based line number where the key is defined.
        raw_bytes_sha256: hex SHA-256 of the raw bytes (before BOM/newline normalisation).
    """

    source: str
    values: dict[str, str]
    lines: dict[str, int]
    raw_bytes_sha256: str

    def __repr__(self) -> str:
        """Show the source and the key names, never the values."""
        return f"EnvFile(source={self.source!r}, keys={list(self.values)!r})"


def read_env_file(path: Path) -> EnvFile:
    """Read and parse an env file.

    Args:
        path: the v1 ``.env`` file.

    Returns:
        The parsed file, with ``source`` set to ``str(path)``.

    Raises:
        EnvFileError: the file is missing, unreadable, too large, binary or malformed.
    """
    return parse_env_text(_read_bytes(path), str(path))


def parse_env_text(text: str | bytes, source: str) -> EnvFile:
    """Parse env-file content.

    Args:
        text: the content; ``bytes`` are decoded as UTF-8, ``str`` is taken as already decoded.
        source: name used in error messages and stored as ``EnvFile.source``.

    Returns:
        The parsed file (an empty ``values`` dict when the content defines no key).

    Raises:
        EnvFileError: the content is too large, binary or malformed.
    """
    data = text.encode("utf-8", "surrogatepass") if isinstance(text, str) else text
    parser = _Parser(_decode(data, source), source)
    parser.run()
    return EnvFile(
        source=source,
        values=parser.values,
        lines=parser.lines,
        raw_bytes_sha256=hashlib.sha256(data).hexdigest(),
    )


def _read_bytes(path: Path) -> bytes:
    """Read at most ``MAX_ENV_FILE_BYTES + 1`` bytes, translating OS errors to EnvFileError."""
    source = str(path)
    try:
        with path.open("rb") as handle:
            return handle.read(MAX_ENV_FILE_BYTES + 1)
    except FileNotFoundError:
        raise _env_error(source, "file not found", f"Check the path, or {POINT_AT_FILE}.") from None
    except IsADirectoryError:
        raise _env_error(source, "is a directory, not a file", f"{POINT_AT_FILE}.") from None
    except PermissionError:
        fix = f"Make it readable by this user, or {POINT_AT_FILE}."
        raise _env_error(source, "permission denied", fix) from None
    except OSError as exc:
        problem = f"cannot be read ({exc.strerror or type(exc).__name__})"
        raise _env_error(source, problem, f"{POINT_AT_FILE}.") from None


def _decode(data: bytes, source: str) -> str:
    """Check size and text-ness, strip a UTF-8 BOM and normalise CRLF / CR to LF."""
    if len(data) > MAX_ENV_FILE_BYTES:
        problem = f"file is larger than 1 MiB ({MAX_ENV_FILE_BYTES} bytes); not an env file"
        raise _env_error(source, problem, f"Check the path, or {POINT_AT_FILE}.")
    skip = len(codecs.BOM_UTF8) if data.startswith(codecs.BOM_UTF8) else 0
    body = data[skip:]
    bad = [offset for offset in (body.find(b"\0"), _first_invalid_utf8(body)) if offset >= 0]
    if bad:
        problem = f"is not a text file (binary content at byte {min(bad) + skip})"
        raise _env_error(source, problem, f"Check the path, or {POINT_AT_FILE}.")
    return body.decode("utf-8").replace("\r\n", "\n").replace("\r", "\n")


def _first_invalid_utf8(data: bytes) -> int:
    """Offset of the first byte that is not valid UTF-8, or -1."""
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        return exc.start
    return -1
