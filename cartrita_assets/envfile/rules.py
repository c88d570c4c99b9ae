"""Key and URL rules shared by the PostgreSQL and Redis settings.

Reading the separately set keys (POSTGRES_* / REDIS_*), splitting a connection URL, and checking
that the two agree. Errors name keys, never values.
"""

from __future__ import annotations

import re
from urllib.parse import SplitResult, unquote, urlsplit

from cartrita_assets.envfile.errors import _env_error
from cartrita_assets.envfile.parser import EnvFile

_INT_RE = re.compile(r"[0-9]{1,9}")
_Found = dict[str, str | int]
"""Field name -> typed value of the separately set keys (POSTGRES_* or REDIS_*)."""
_URL_HINT = "percent-encode ':', '/', '@', '?', '#' and '%' in the user name and password"


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


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
