"""PostgreSQL settings: :class:`PostgresSettings` and how DATABASE_URL / POSTGRES_* yield them."""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import parse_qs, quote, unquote

from cartrita_assets.envfile.errors import _env_error
from cartrita_assets.envfile.parser import EnvFile
from cartrita_assets.envfile.rules import (
    _URL_HINT,
    _check_agreement,
    _Found,
    _is_set,
    _key_fields,
    _split_url,
    _url_credentials,
    _url_host,
    _url_port,
)

_PG_FIELDS = {
    "POSTGRES_HOST": "host",
    "POSTGRES_PORT": "port",
    "POSTGRES_USER": "user",
    "POSTGRES_PASSWORD": "password",
    "POSTGRES_DB": "dbname",
}
_PG_REQUIRED = ("POSTGRES_USER", "POSTGRES_PASSWORD", "POSTGRES_DB")
_PG_EXAMPLE = "DATABASE_URL=postgresql://user:pass@host:port/db"


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
