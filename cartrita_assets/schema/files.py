"""The migration files: names, order, checksums, headers and MIGRATION_MANIFEST.json."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path

from cartrita_assets.errors import MigrationError

NO_TRANSACTION = "-- cartrita: no-transaction"
FILE_PATTERN = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
MANIFEST_FILE = "MIGRATION_MANIFEST.json"


@dataclass(frozen=True)
class Migration:
    """One file of ``sql/migrations``."""

    version: str
    name: str
    filename: str
    text: str
    checksum: str
    description: str
    depends: tuple[str, ...]
    transactional: bool


def normalise(text: str) -> str:
    """Text with a leading BOM removed and CRLF / CR line endings turned into LF."""
    return text.removeprefix("\ufeff").replace("\r\n", "\n").replace("\r", "\n")


def checksum(text: str) -> str:
    """sha256 of the normalised text: the same file checks the same on every OS."""
    return hashlib.sha256(normalise(text).encode()).hexdigest()


def _header(text: str, key: str) -> str:
    match = re.search(rf"^-- {key}:(.*)$", text, re.MULTILINE)
    return match.group(1).strip() if match else ""


def load_migrations(folder: Path) -> list[Migration]:
    """Every migration in ``folder``, ordered by version.

    Raises:
        MigrationError: a ``.sql`` file with a malformed name, or two files with one version.
    """
    found: dict[str, Migration] = {}
    for path in sorted(folder.glob("*.sql")):
        match = FILE_PATTERN.match(path.name)
        if not match:
            raise MigrationError(
                f"{path.name}: migration files are named NNNN_verb_object.sql (lower case); "
                "rename it."
            )
        version, name = match.groups()
        if version in found:
            raise MigrationError(
                f"{path.name} and {found[version].filename} share version {version}."
            )
        text = normalise(path.read_text(encoding="utf-8"))
        found[version] = Migration(
            version=version,
            name=name,
            filename=path.name,
            text=text,
            checksum=checksum(text),
            description=_header(text, "description"),
            depends=tuple(v for v in _header(text, "depends").replace(",", " ").split() if v),
            transactional=not text.lstrip().startswith(NO_TRANSACTION),
        )
    return [found[v] for v in sorted(found)]


def manifest_entries(migrations: list[Migration]) -> list[dict[str, object]]:
    """The content of ``MIGRATION_MANIFEST.json`` for these files."""
    return [
        {
            "version": m.version,
            "file": m.filename,
            "sha256": m.checksum,
            "description": m.description,
            "dependencies": list(m.depends),
            "transactional": m.transactional,
        }
        for m in migrations
    ]


def manifest_problems(folder: Path, migrations: list[Migration]) -> list[str]:
    """Where ``MIGRATION_MANIFEST.json`` (one level above ``folder``) disagrees with the files."""
    path = folder.parent / MANIFEST_FILE
    if not path.exists():
        return [f"{MANIFEST_FILE} is missing: run `cartrita db manifest --write`"]
    recorded = {e["version"]: e for e in json.loads(path.read_text())["migrations"]}
    actual = {str(e["version"]): e for e in manifest_entries(migrations)}
    problems = [f"{v}: in the manifest but no file" for v in sorted(set(recorded) - set(actual))]
    problems += [f"{v}: file not in the manifest" for v in sorted(set(actual) - set(recorded))]
    problems += [
        f"{v}: manifest says {k} {recorded[v].get(k)!r}, the file has {actual[v][k]!r}"
        for v in sorted(set(actual) & set(recorded))
        for k in ("file", "sha256", "description", "dependencies", "transactional")
        if recorded[v].get(k) != actual[v][k]
    ]
    return problems


def write_manifest(folder: Path) -> Path:
    """Regenerate ``MIGRATION_MANIFEST.json`` from the files."""
    path = folder.parent / MANIFEST_FILE
    body = {"migrations": manifest_entries(load_migrations(folder))}
    path.write_text(json.dumps(body, indent=2) + "\n")
    return path


def check_dependencies(migrations: list[Migration]) -> None:
    """Every dependency names an earlier migration."""
    seen: set[str] = set()
    for m in migrations:
        missing = [d for d in m.depends if d not in seen]
        if missing:
            raise MigrationError(
                f"{m.filename} depends on {', '.join(missing)}, which is not an earlier migration."
            )
        seen.add(m.version)
