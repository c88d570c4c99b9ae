"""Read Cartrita v1's ``.env`` file and turn it into typed connection settings.

Two layers:

* :func:`read_env_file` / :func:`parse_env_text` parse the dotenv syntax into an :class:`EnvFile`
  (the rules are in ``docs/env-file.md``);
* :meth:`V1Settings.from_env_file` picks the PostgreSQL and Redis settings out of it.

Values come only from the file: nothing here reads ``os.environ``. Every error is an
:class:`~cartrita_assets.errors.EnvFileError` whose message names the file, the line or the key and
the fix, and never contains a value from the file.

Files: ``parser`` (reading and decoding the file, :class:`EnvFile`), ``syntax`` (the dotenv
grammar), ``settings`` (:class:`V1Settings` and what counts as a secret), ``postgres`` and
``redis`` (each connection's settings and where they come from), ``rules`` (key and URL rules
both share) and ``errors`` (the one error shape).
"""

from cartrita_assets.envfile.parser import (
    MAX_ENV_FILE_BYTES,
    POINT_AT_FILE,
    EnvFile,
    parse_env_text,
    read_env_file,
)
from cartrita_assets.envfile.postgres import PostgresSettings
from cartrita_assets.envfile.redis import RedisSettings
from cartrita_assets.envfile.settings import V1Settings

__all__ = [
    "MAX_ENV_FILE_BYTES",
    "POINT_AT_FILE",
    "EnvFile",
    "PostgresSettings",
    "RedisSettings",
    "V1Settings",
    "parse_env_text",
    "read_env_file",
]
