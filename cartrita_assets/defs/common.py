"""Small helpers shared by the phases."""

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path

import dagster as dg

from cartrita_assets.backup.manifest import Manifest
from cartrita_assets.backup.store import BackupStore
from cartrita_assets.defs.facts import required_metadata
from cartrita_assets.errors import CartritaError

OWNERS = ["team:data-platform"]


def progress(
    context: dg.AssetExecutionContext | dg.AssetCheckExecutionContext,
) -> Callable[[str], None]:
    """A logger for progress lines in the run log."""
    return context.log.info


def current_backup(
    context: dg.AssetExecutionContext | dg.AssetCheckExecutionContext, store: BackupStore
) -> tuple[Path, Manifest]:
    """The backup recorded by the latest materialization of ``v1_backup``."""
    missing = "There is no backup yet: materialize v1_backup first."
    recorded = required_metadata(context.instance, "v1_backup", missing)
    return store.load(str(recorded["backup_id"]))


def table_md(header: list[str], rows: list[list[object]]) -> dg.MetadataValue:
    """A small markdown table for the UI."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return dg.MetadataValue.md("\n".join(lines))


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """Show a project error as one clear message in the UI (a ``dg.Failure``, no stack trace).

    The message is the error's own: it names the problem and the fix and holds no secret.
    """
    try:
        yield
    except CartritaError as exc:
        raise dg.Failure(description=f"{type(exc).__name__}: {exc}", allow_retries=False) from None
