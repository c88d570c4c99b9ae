"""The one error shape of the env-file package: ``{source}: line {n}: {problem}. {fix}``."""

from __future__ import annotations

from cartrita_assets.errors import EnvFileError


def _env_error(source: str, problem: str, fix: str, line: int | None = None) -> EnvFileError:
    """Build the one error shape of this package: ``{source}: line {n}: {problem}. {fix}``."""
    where = source if line is None else f"{source}: line {line}"
    return EnvFileError(f"{where}: {problem}. {fix}")
