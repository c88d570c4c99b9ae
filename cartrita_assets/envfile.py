"""Read Cartrita v1's ``.env`` file and turn it into typed connection settings.

Two layers:

* :func:`read_env_file` / :func:`parse_env_text` parse the dotenv syntax into an :class:`EnvFile`
  (the rules are in ``docs/env-file.md``);
* :meth:`V1Settings.from_env_file` picks the PostgreSQL and Redis settings out of it.

Values come only from the file: nothing here reads ``os.environ``. Every error is an
:class:`~cartrita_assets.errors.EnvFileError` whose message names the file, the line or the key and
the fix, and never contains a value from the file.
"""

from __future__ import annotations

import codecs
import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import SplitResult, parse_qs, quote, unquote, urlsplit

from cartrita_assets.errors import EnvFileError

MAX_ENV_FILE_BYTES = 1024 * 1024
"""Largest env file accepted (1 MiB); anything bigger is certainly not a v1 ``.env`` file."""

POINT_AT_FILE = "set CARTRITA_V1_ENV_FILE or pass --env-file with the path of the v1 .env file"

_WS = " \t"
_KEY_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_SHOWABLE_VAR_RE = re.compile(r"[A-Z_][A-Z0-9_]{0,62}")
_EXPORT_RE = re.compile(r"export[ \t]+(?=[^ \t=])")
_INLINE_COMMENT_RE = re.compile(r"[ \t]#")
_DOUBLE_BODY_RE = re.compile(r'[^"\\]*(?:\\.[^"\\]*)*', re.DOTALL)
_REF = r"\$\{(?P<braced>[^}]*)\}|\$(?P<bare>[A-Za-z_][A-Za-z0-9_]*)|(?P<open>\$\{)"
_UNQUOTED_TOKEN_RE = re.compile(_REF)
_DOUBLE_TOKEN_RE = re.compile(r"\\(?P<esc>.)|" + _REF, re.DOTALL)
_BRACED_RE = re.compile(r"(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:-|-)(?P<default>.*))?", re.S)
_ESCAPES = {"n": "\n", "r": "\r", "t": "\t", '"': '"', "\\": "\\", "$": "$"}
_INT_RE = re.compile(r"[0-9]{1,9}")


def _env_error(source: str, problem: str, fix: str, line: int | None = None) -> EnvFileError:
    """Build the one error shape of this module: ``{source}: line {n}: {problem}. {fix}``."""
    where = source if line is None else f"{source}: line {line}"
    return EnvFileError(f"{where}: {problem}. {fix}")


# --------------------------------------------------------------------------------------------------
# Parser
# --------------------------------------------------------------------------------------------------


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


class _Parser:
    """Walks the normalised text statement by statement, filling ``values`` and ``lines``."""

    def __init__(self, text: str, source: str) -> None:
        self.text = text
        self.source = source
        self.pos = 0
        self.line = 1
        self.values: dict[str, str] = {}
        self.lines: dict[str, int] = {}

    def error(self, line: int, problem: str, fix: str) -> EnvFileError:
        return _env_error(self.source, problem, fix, line)

    def run(self) -> None:
        while self.pos < len(self.text):
            self._statement()

    def _line_end(self, pos: int) -> int:
        end = self.text.find("\n", pos)
        return len(self.text) if end < 0 else end

    def _advance_to(self, end: int) -> None:
        """Move past the newline at ``end`` (or to the end of the text), counting lines."""
        self.line += self.text.count("\n", self.pos, end) + 1
        self.pos = end + 1

    def _statement(self) -> None:
        end = self._line_end(self.pos)
        body = self.text[self.pos : end].lstrip(_WS)
        if not body.strip(_WS) or body.startswith("#"):
            self._advance_to(end)
            return
        offset = end - len(body)
        export = _EXPORT_RE.match(body)
        if export:
            body, offset = body[export.end() :], offset + export.end()
        equals = body.find("=")
        if equals < 0:
            fix = "Write KEY=VALUE, or start the line with # to make it a comment."
            raise self.error(self.line, "expected KEY=VALUE but the line has no '='", fix)
        key = self._key(body[:equals].strip(_WS))
        value, end = self._value(offset + equals + 1, end)
        self.values[key] = value
        self.lines[key] = self.line
        self._advance_to(end)

    def _key(self, key: str) -> str:
        """Validate a key name and reject duplicates."""
        if not _KEY_RE.fullmatch(key):
            shown = f" {key!r}" if len(key) < 64 and "=" not in key and key.isprintable() else ""
            problem = f"invalid key name{shown}" if key else "missing key name before '='"
            fix = "Key names are letters, digits and _, and do not start with a digit."
            raise self.error(self.line, problem, fix)
        if key in self.lines:
            problem = f"duplicate key {key} (first defined on line {self.lines[key]})"
            raise self.error(self.line, problem, "Remove or rename one of the two definitions.")
        return key

    def _value(self, start: int, end: int) -> tuple[str, int]:
        """Parse the value starting at ``start``; return it and the end of its last line."""
        raw = self.text[start:end]
        lead = len(raw) - len(raw.lstrip(_WS))
        if raw[lead : lead + 1] == "'":
            return self._quoted(start + lead, self._single_close)
        if raw[lead : lead + 1] == '"':
            inner, end = self._quoted(start + lead, self._double_close)
            return self._interpolate(inner, _DOUBLE_TOKEN_RE), end
        comment = _INLINE_COMMENT_RE.search(raw)
        raw = raw[: comment.start()] if comment else raw
        return self._interpolate(raw.strip(_WS), _UNQUOTED_TOKEN_RE), end

    def _single_close(self, start: int) -> int:
        return self.text.find("'", start)

    def _double_close(self, start: int) -> int:
        match = _DOUBLE_BODY_RE.match(self.text, start)  # always matches (maybe empty)
        close = match.end() if match else start
        return close if self.text.startswith('"', close) else -1

    def _quoted(self, opening: int, find_close: Callable[[int], int]) -> tuple[str, int]:
        """Return the text between the quote at ``opening`` and its closing quote."""
        kind = "single" if self.text[opening] == "'" else "double"
        close = find_close(opening + 1)
        if close < 0:
            problem = f"unterminated {kind} quote (opened on this line, never closed)"
            raise self.error(self.line, problem, "Add the closing quote.")
        end = self._line_end(close)
        trailing = self.text[close + 1 : end].lstrip(_WS)
        if trailing and not trailing.startswith("#"):
            line = self.line + self.text.count("\n", self.pos, close)
            fix = "Only spaces and a # comment may follow it; put all of the value inside quotes."
            raise self.error(line, f"unexpected text after the closing {kind} quote", fix)
        return self.text[opening + 1 : close], end

    def _interpolate(self, raw: str, tokens: re.Pattern[str]) -> str:
        """Apply escapes (double quotes only) and ``$`` references to ``raw``."""
        return tokens.sub(self._replace, raw)

    def _replace(self, match: re.Match[str]) -> str:
        escaped = match.groupdict().get("esc")
        if escaped is not None:
            return _ESCAPES.get(escaped, "\\" + escaped)
        if match["bare"] is not None:
            return self._resolve(match["bare"], None, "")
        if match["open"] is not None:
            fix = "Close it with }, or single-quote the value if the '$' is literal."
            raise self.error(self.line, "'${' without a closing '}'", fix)
        braced = _BRACED_RE.fullmatch(match["braced"])
        if braced is None:
            fix = "Use ${NAME}, ${NAME:-default} or ${NAME-default} (NAME: letters, digits, _)."
            raise self.error(self.line, "invalid variable reference", fix)
        return self._resolve(braced["name"], braced["op"], braced["default"] or "")

    def _resolve(self, name: str, op: str | None, default: str) -> str:
        """Value of ``name`` among the keys defined so far, honouring ``:-`` / ``-`` defaults."""
        value = self.values.get(name)
        if (op == ":-" and not value) or (op == "-" and value is None):
            return default
        if value is not None:
            return value
        raise self._undefined(name)

    def _undefined(self, name: str) -> EnvFileError:
        # A name that does not look like an env variable is likely part of a password: hide it.
        if _SHOWABLE_VAR_RE.fullmatch(name):
            problem = f"variable {name} is not defined on an earlier line of this file"
        else:
            problem = "a '$' reference names a variable not defined earlier (name not shown)"
        fix = (
            "Define it on an earlier line or give a default (${NAME:-default}); the process "
            "environment is never used. If the '$' is literal, single-quote the value "
            "or write \\$ inside double quotes."
        )
        return self.error(self.line, problem, fix)


# --------------------------------------------------------------------------------------------------
# Settings
# --------------------------------------------------------------------------------------------------

_PG_FIELDS = {
    "POSTGRES_HOST": "host",
    "POSTGRES_PORT": "port",
    "POSTGRES_USER": "user",
    "POSTGRES_PASSWORD": "password",
    "POSTGRES_DB": "dbname",
}
_PG_REQUIRED = ("POSTGRES_USER", "POSTGRES_PASSWORD", "POSTGRES_DB")
_PG_EXAMPLE = "DATABASE_URL=postgresql://user:pass@host:port/db"
_REDIS_FIELDS = {
    "REDIS_HOST": "host",
    "REDIS_PORT": "port",
    "REDIS_PASSWORD": "password",
    "REDIS_DB": "db",
}
_REDIS_EXAMPLE = "REDIS_URL=redis://:password@host:6379/0"
_CONSUMED = frozenset({"DATABASE_URL", "REDIS_URL", *_PG_FIELDS, *_REDIS_FIELDS})
_SECRET_NAME_PARTS = ("PASSWORD", "SECRET", "TOKEN", "KEY", "PASS", "CREDENTIAL", "DSN")
_Found = dict[str, str | int]
"""Field name -> typed value of the separately set keys (POSTGRES_* or REDIS_*)."""
_URL_HINT = "percent-encode ':', '/', '@', '?', '#' and '%' in the user name and password"


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


@dataclass(frozen=True)
class PostgresSettings:
    """Where and how to connect to v1's PostgreSQL."""

    host: str
    port: int
    user: str
    password: str = field(repr=False)
    dbname: str
    sslmode: str | None = None

    def masked_dsn(self) -> str:
        """The connection URL with the password replaced by ``***`` (safe to log).

        Returns:
            ``postgresql://user:***@host:port/dbname``, plus ``?sslmode=...`` when set.
        """
        user, dbname = quote(self.user, safe=""), quote(self.dbname, safe="")
        dsn = f"postgresql://{user}:***@{_url_host(self.host)}:{self.port}/{dbname}"
        return dsn + (f"?sslmode={quote(self.sslmode, safe='')}" if self.sslmode else "")

    def conninfo_kwargs(self) -> dict[str, object]:
        """Keyword arguments for ``psycopg.connect(**kwargs)``.

        Returns:
            ``host``, ``port``, ``user``, ``password``, ``dbname`` and, when set, ``sslmode``.
        """
        kwargs: dict[str, object] = {
            "host": self.host,
            "port": self.port,
            "user": self.user,
            "password": self.password,
            "dbname": self.dbname,
        }
        if self.sslmode:
            kwargs["sslmode"] = self.sslmode
        return kwargs


@dataclass(frozen=True)
class RedisSettings:
    """Where and how to connect to v1's Redis."""

    host: str
    port: int
    password: str | None = field(repr=False)
    db: int = 0
    username: str | None = None
    tls: bool = False

    def masked_url(self) -> str:
        """The connection URL with the password replaced by ``***`` (safe to log).

        Returns:
            ``redis[s]://[user]:***@host:port/db`` (no ``user:***@`` part without a password).
        """
        scheme = "rediss" if self.tls else "redis"
        user = quote(self.username or "", safe="")
        auth = f"{user}:***@" if self.password else (f"{user}@" if user else "")
        return f"{scheme}://{auth}{_url_host(self.host)}:{self.port}/{self.db}"


@dataclass(frozen=True)
class V1Settings:
    """The v1 app's data-tier settings, taken from its env file (never from ``os.environ``)."""

    source: str
    postgres: PostgresSettings
    redis: RedisSettings | None
    other_keys: dict[str, str] = field(repr=False)

    def secret_values(self) -> list[str]:
        """Every value that must be redacted from logs, metadata and error text.

        Returns:
            The PostgreSQL and Redis passwords (raw and percent-encoded), and from ``other_keys``
            the value of every key whose name contains PASSWORD, SECRET, TOKEN, KEY, PASS,
            CREDENTIAL or DSN, plus every URL value that carries a password (the URL and its
            password). Non-empty, without duplicates, in that order.
        """
        found = _password_forms(self.postgres.password)
        found += _password_forms(self.redis.password if self.redis else None)
        for key, value in self.other_keys.items():
            if any(part in key.upper() for part in _SECRET_NAME_PARTS):
                found.append(value)
            url_password = _url_password(value)
            if url_password:
                found += [value, *_password_forms(url_password)]
        return list(dict.fromkeys(value for value in found if value))

    @classmethod
    def from_env_file(cls, env: EnvFile) -> V1Settings:
        """Pick the PostgreSQL and Redis settings out of a parsed env file.

        Args:
            env: the parsed v1 env file.

        Returns:
            The settings; ``redis`` is None when the file has neither REDIS_URL nor REDIS_HOST.

        Raises:
            EnvFileError: a required key is missing, a port or db is not an integer in range, a
                URL is malformed, or a URL disagrees with the separate keys.
        """
        other = {key: value for key, value in env.values.items() if key not in _CONSUMED}
        return cls(
            source=env.source,
            postgres=_postgres_settings(env),
            redis=_redis_settings(env),
            other_keys=other,
        )


def _password_forms(password: str | None) -> list[str]:
    """A password raw and percent-encoded with upper- and lower-case hex (as inside a URL)."""
    if not password:
        return []
    encoded = quote(password, safe="")
    return [password, encoded, re.sub(r"%[0-9A-F]{2}", lambda m: m[0].lower(), encoded)]


def _url_password(value: str) -> str | None:
    """The decoded password of ``value`` when it is a URL carrying one."""
    if "://" not in value:
        return None
    try:
        password = urlsplit(value).password
    except ValueError:
        return None
    return unquote(password) if password else None


def _is_set(env: EnvFile, key: str) -> bool:
    """True when ``key`` is in the file with a non-empty value (empty counts as not set)."""
    return bool(env.values.get(key))


def _parse_int(env: EnvFile, key: str, raw: str, low: int, high: int | None) -> int:
    """Parse a decimal integer in ``low..high`` or raise an error naming ``key``."""
    number = int(raw) if _INT_RE.fullmatch(raw) else -1
    if low <= number and (high is None or number <= high):
        return number
    limits = f"between {low} and {high}" if high is not None else f"of at least {low}"
    problem = f"{key} is not an integer {limits}"
    raise _env_error(env.source, problem, f"Fix the value of {key}.", env.lines[key])


def _key_fields(env: EnvFile, fields: dict[str, str]) -> _Found:
    """Field name -> typed value for each of ``fields``' keys that is set in the file."""
    found: _Found = {}
    for key, name in fields.items():
        if _is_set(env, key):
            raw = env.values[key]
            if name == "port":
                found[name] = _parse_int(env, key, raw, 1, 65535)
            elif name == "db":
                found[name] = _parse_int(env, key, raw, 0, None)
            else:
                found[name] = raw
    return found


def _check_agreement(
    env: EnvFile, url_key: str, settings: object, found: _Found, fields: dict[str, str]
) -> None:
    """Raise when a separately set key disagrees with what the URL says (names keys only)."""
    differing = []
    for key, name in fields.items():
        if name not in found:
            continue
        ours, theirs = found[name], getattr(settings, name)
        if name == "host" and isinstance(ours, str) and isinstance(theirs, str):
            ours, theirs = ours.lower(), theirs.lower()
        if ours != theirs:
            differing.append(key)
    if differing:
        problem = f"{url_key} disagrees with {', '.join(differing)}"
        fix = f"Make them agree, or remove either {url_key} or the separate keys."
        raise _env_error(env.source, problem, fix)


def _split_url(env: EnvFile, key: str, schemes: tuple[str, ...], example: str) -> SplitResult:
    """Split the URL in ``key``, checking its scheme; errors never show the URL."""
    value, line = env.values[key], env.lines[key]
    fix = f"Write it as {example} ({_URL_HINT})."
    try:
        parts = urlsplit(value)
    except ValueError:
        raise _env_error(env.source, f"{key} is not a valid URL", fix, line) from None
    if "://" not in value or not re.fullmatch(r"[a-z][a-z0-9+.-]{0,19}", parts.scheme):
        raise _env_error(env.source, f"{key} is not a URL", fix, line)
    if parts.scheme not in schemes:
        problem = f"{key} has the unsupported scheme '{parts.scheme}'"
        fix = f"Use {' or '.join(f'{s}://' for s in schemes)}, as in {example}."
        raise _env_error(env.source, problem, fix, line)
    if parts.fragment:
        raise _env_error(env.source, f"{key} contains an unencoded '#'", fix, line)
    return parts


def _url_port(env: EnvFile, key: str, parts: SplitResult, default: int) -> int:
    """The URL's port (``default`` when absent), 1..65535, or an error naming ``key``."""
    try:
        port = parts.port
    except ValueError:
        port = 0
    if port is None:
        return default
    if port < 1:
        problem = f"{key} has a port that is not an integer between 1 and 65535"
        raise _env_error(env.source, problem, f"Fix the port ({_URL_HINT}).", env.lines[key])
    return port


def _url_credentials(parts: SplitResult) -> tuple[str | None, str | None]:
    """Percent-decoded user name and password; empty ones become None."""
    user = unquote(parts.username) if parts.username else None
    password = unquote(parts.password) if parts.password else None
    return user, password


def _postgres_settings(env: EnvFile) -> PostgresSettings:
    """PostgreSQL settings from DATABASE_URL or POSTGRES_*, checking that both agree."""
    found = _key_fields(env, _PG_FIELDS)
    if not _is_set(env, "DATABASE_URL"):
        return _postgres_from_keys(env, found)
    settings = _postgres_from_url(env)
    _check_agreement(env, "DATABASE_URL", settings, found, _PG_FIELDS)
    return settings


def _postgres_from_keys(env: EnvFile, found: _Found) -> PostgresSettings:
    missing = [key for key in _PG_REQUIRED if _PG_FIELDS[key] not in found]
    if missing:
        problem = f"missing {', '.join(missing)} (and no DATABASE_URL)"
        fix = f"Add {', '.join(f'{key}=...' for key in missing)} or {_PG_EXAMPLE}."
        raise _env_error(env.source, problem, fix)
    return PostgresSettings(
        host=str(found.get("host", "localhost")),
        port=int(found.get("port", 5432)),
        user=str(found["user"]),
        password=str(found["password"]),
        dbname=str(found["dbname"]),
    )


def _postgres_from_url(env: EnvFile) -> PostgresSettings:
    key = "DATABASE_URL"
    parts = _split_url(env, key, ("postgres", "postgresql"), _PG_EXAMPLE.split("=", 1)[1])
    user, password = _url_credentials(parts)
    dbname = unquote(parts.path[1:] if parts.path.startswith("/") else parts.path)
    named = (("user name", user), ("password", password), ("database name", dbname))
    missing = [name for name, value in named if not value]
    if missing:
        problem = f"{key} has no {' and no '.join(missing)}"
        fix = f"Write it as {_PG_EXAMPLE.split('=', 1)[1]} ({_URL_HINT})."
        raise _env_error(env.source, problem, fix, env.lines[key])
    sslmode = parse_qs(parts.query).get("sslmode")
    return PostgresSettings(
        host=parts.hostname or "localhost",
        port=_url_port(env, key, parts, 5432),
        user=str(user),
        password=str(password),
        dbname=dbname,
        sslmode=sslmode[-1] if sslmode else None,
    )


def _redis_settings(env: EnvFile) -> RedisSettings | None:
    """Redis settings from REDIS_URL or REDIS_*, or None when the file configures no Redis."""
    found = _key_fields(env, _REDIS_FIELDS)
    if _is_set(env, "REDIS_URL"):
        settings = _redis_from_url(env)
        _check_agreement(env, "REDIS_URL", settings, found, _REDIS_FIELDS)
        return settings
    if "host" in found:
        return RedisSettings(
            host=str(found["host"]),
            port=int(found.get("port", 6379)),
            password=str(found["password"]) if "password" in found else None,
            db=int(found.get("db", 0)),
        )
    if found:
        keys = ", ".join(key for key, name in _REDIS_FIELDS.items() if name in found)
        problem = f"{keys} set but neither REDIS_HOST nor REDIS_URL"
        raise _env_error(env.source, problem, f"Add REDIS_HOST=<host> or {_REDIS_EXAMPLE}.")
    return None


def _redis_from_url(env: EnvFile) -> RedisSettings:
    key = "REDIS_URL"
    example = _REDIS_EXAMPLE.split("=", 1)[1]
    parts = _split_url(env, key, ("redis", "rediss"), example)
    fix = f"Write it as {example} or redis://user:password@host:6379/0 ({_URL_HINT})."
    if "@" in parts.netloc and parts.password is None:
        problem = f"{key} has credentials without ':' (user or password?)"
        raise _env_error(env.source, problem, fix, env.lines[key])
    path = parts.path.strip("/")
    if path and not _INT_RE.fullmatch(path):
        problem = f"{key} has a database number (the path) that is not an integer of at least 0"
        raise _env_error(env.source, problem, fix, env.lines[key])
    username, password = _url_credentials(parts)
    return RedisSettings(
        host=parts.hostname or "localhost",
        port=_url_port(env, key, parts, 6379),
        password=password,
        db=int(path) if path else 0,
        username=username,
        tls=parts.scheme == "rediss",
    )
