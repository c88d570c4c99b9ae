"""Redis settings: :class:`RedisSettings` and how REDIS_URL / REDIS_* yield them (or none)."""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import quote

from cartrita_assets.envfile.errors import _env_error
from cartrita_assets.envfile.parser import EnvFile
from cartrita_assets.envfile.rules import (
    _INT_RE,
    _URL_HINT,
    _check_agreement,
    _is_set,
    _key_fields,
    _split_url,
    _url_credentials,
    _url_host,
    _url_port,
)

_REDIS_FIELDS = {
    "REDIS_HOST": "host",
    "REDIS_PORT": "port",
    "REDIS_PASSWORD": "password",
    "REDIS_DB": "db",
}
_REDIS_EXAMPLE = "REDIS_URL=redis://:password@host:6379/0"


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
