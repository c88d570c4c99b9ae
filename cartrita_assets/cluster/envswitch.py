"""The environment files of the cutover: ``.env.v1`` (an exact copy of v1's ``.env``) and
``.env.v2`` (the same file pointing at v2), written beside ``.env``, which is never touched here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

from cartrita_assets.envfile.cutover import cutover_file
from cartrita_assets.errors import EnvFileError
from cartrita_assets.redaction import write_private_file

# KEY=VALUE with optional export and one optional pair of quotes; multi-line values are left alone.
LINE = re.compile(r"^(?P<lead>\s*(?:export\s+)?)(?P<key>[A-Za-z_][A-Za-z0-9_]*)(?P<eq>\s*=\s*)"
                  r"(?P<q>['\"]?)(?P<value>[^'\"\n]*)(?P=q)(?P<rest>\s*(?:#.*)?)$")  # fmt: skip


@dataclass(frozen=True)
class Endpoint:
    """A host and port as the application will reach it."""

    host: str
    port: int
    password: str | None = None  # set only when v2 needs a password v1's file does not hold


def _swap_netloc(url: str, endpoint: Endpoint) -> str:
    parts = urlsplit(url)
    userinfo = parts.netloc.rpartition("@")[0]
    if endpoint.password is not None:
        userinfo = f"{userinfo.partition(':')[0]}:{quote(endpoint.password, safe='')}"
    netloc = f"{userinfo}@" if userinfo else ""
    return urlunsplit(parts._replace(netloc=f"{netloc}{endpoint.host}:{endpoint.port}"))


def v2_value(key: str, value: str, postgres: Endpoint, redis: Endpoint | None) -> str | None:
    """The v2 value of one v1 key, or None when the key keeps its value.

    A value built from ``${VAR}`` references is kept: the referenced keys are rewritten instead.
    """
    if "$" in value:
        return None
    rewrites = {
        "POSTGRES_HOST": lambda: postgres.host,
        "POSTGRES_PORT": lambda: str(postgres.port),
        "DATABASE_URL": lambda: _swap_netloc(value, postgres),
    }
    if redis is not None:
        rewrites |= {
            "REDIS_HOST": lambda: redis.host,
            "REDIS_PORT": lambda: str(redis.port),
            "REDIS_URL": lambda: _swap_netloc(value, redis),
        }
        if redis.password is not None:
            rewrites["REDIS_PASSWORD"] = lambda: str(redis.password)
    rewrite = rewrites.get(key)
    return rewrite() if rewrite else None


def render_v2(text: str, postgres: Endpoint, redis: Endpoint | None) -> str:
    """v1's ``.env`` text with the PostgreSQL and Redis endpoints replaced; all else as it was."""
    out = []
    for line in text.splitlines(keepends=True):
        body = line.rstrip("\r\n")
        match = LINE.match(body)
        new = match and v2_value(match["key"], match["value"], postgres, redis)
        if match and new is not None:
            q = match["q"]
            body = f"{match['lead']}{match['key']}{match['eq']}{q}{new}{q}{match['rest']}"
        out.append(body + line[len(line.rstrip("\r\n")) :])
    return "".join(out)


def write_env_files(
    env_file: Path, postgres: Endpoint, redis: Endpoint | None
) -> tuple[Path, Path]:
    """Write ``.env.v1`` and ``.env.v2`` (both 0600) beside ``env_file``.

    Raises:
        EnvFileError: ``.env.v1`` exists and differs from ``env_file`` (the ``.env`` changed since,
            or was already switched to v2): nothing is overwritten.
    """
    original = env_file.read_bytes()
    v1_copy = cutover_file(env_file, "v1")
    if v1_copy.exists() and v1_copy.read_bytes() != original:
        raise EnvFileError(
            f"{v1_copy} exists and differs from {env_file}: either v1's environment changed since "
            "it was saved, or the .env already points at v2. Compare them; if the current file is "
            "v1's, remove the old copy and run again."
        )
    write_private_file(v1_copy, original)
    text = original.decode("utf-8-sig")
    v2_copy = write_private_file(cutover_file(env_file, "v2"), render_v2(text, postgres, redis))
    return v1_copy, v2_copy
