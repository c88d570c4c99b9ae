"""The v1 app's data-tier settings: :class:`V1Settings` and which of its values are secrets."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import quote, unquote, urlsplit

from cartrita_assets.envfile.parser import EnvFile
from cartrita_assets.envfile.postgres import _PG_FIELDS, PostgresSettings, _postgres_settings
from cartrita_assets.envfile.redis import _REDIS_FIELDS, RedisSettings, _redis_settings

_CONSUMED = frozenset({"DATABASE_URL", "REDIS_URL", *_PG_FIELDS, *_REDIS_FIELDS})
_SECRET_NAME_PARTS = ("PASSWORD", "SECRET", "TOKEN", "KEY", "PASS", "CREDENTIAL", "DSN")


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
