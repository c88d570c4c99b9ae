"""Small helpers shared by the phases."""

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path

import dagster as dg

from cartrita_assets.backup.manifest import Manifest
from cartrita_assets.errors import CartritaError, PreflightError
from cartrita_assets.resources.store import BackupStore

OWNERS = ["team:data-platform"]
V1_BACKUP = dg.AssetKey("v1_backup")


def progress(
    context: dg.AssetExecutionContext | dg.AssetCheckExecutionContext,
) -> Callable[[str], None]:
    """A logger for progress lines in the run log."""
    return context.log.info


def current_backup(
    context: dg.AssetExecutionContext | dg.AssetCheckExecutionContext, store: BackupStore
) -> tuple[Path, Manifest]:
    """The backup recorded by the latest materialization of ``v1_backup``."""
    event = context.instance.get_latest_materialization_event(V1_BACKUP)
    if event is None or event.asset_materialization is None:
        raise PreflightError("There is no backup yet: materialize v1_backup first.")
    backup_id = event.asset_materialization.metadata["backup_id"].value
    return store.load(str(backup_id))


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
