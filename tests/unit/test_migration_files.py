"""Migration files and their manifest (no database)."""

from __future__ import annotations

import json
import shutil

import pytest

from cartrita_assets.errors import MigrationError
from cartrita_assets.paths import data_path
from cartrita_assets.schema import checksum, load_migrations, manifest_problems
from cartrita_assets.schema.files import check_dependencies

SQL = data_path("sql") / "migrations"


def test_manifest_agrees_with_the_files():
    assert manifest_problems(SQL, load_migrations(SQL)) == []


def test_manifest_disagreement_is_reported(tmp_path):
    shutil.copytree(SQL.parent, tmp_path / "sql")
    folder = tmp_path / "sql" / "migrations"
    (folder / "0003_create_embeddings.sql").write_text(
        "-- description: changed\n-- depends: 0002\n"
    )
    manifest = json.loads((tmp_path / "sql" / "MIGRATION_MANIFEST.json").read_text())
    manifest["migrations"].pop()  # drop the last entry
    (tmp_path / "sql" / "MIGRATION_MANIFEST.json").write_text(json.dumps(manifest))
    problems = manifest_problems(folder, load_migrations(folder))
    assert any(p.startswith("0003: manifest says sha256") for p in problems)
    assert any(p.startswith("0003: manifest says description") for p in problems)
    assert any("file not in the manifest" in p for p in problems)


def test_checksum_ignores_bom_and_line_endings():
    assert checksum("\ufeffSELECT 1;\r\nSELECT 2;\r") == checksum("SELECT 1;\nSELECT 2;\n")
    assert checksum("SELECT 1;") != checksum("SELECT 2;")


def test_files_are_ordered_and_carry_their_headers():
    migrations = load_migrations(SQL)
    versions = [m.version for m in migrations]
    assert versions == sorted(versions) and versions[0] == "0001"
    assert all(m.description for m in migrations)
    check_dependencies(migrations)


def test_bad_names_and_dependencies_are_errors(tmp_path):
    (tmp_path / "0001_Bad-Name.sql").write_text("SELECT 1;")
    with pytest.raises(MigrationError, match="NNNN_verb_object.sql"):
        load_migrations(tmp_path)
    (tmp_path / "0001_Bad-Name.sql").unlink()
    (tmp_path / "0001_first.sql").write_text("-- depends: 0002\nSELECT 1;")
    (tmp_path / "0002_second.sql").write_text("SELECT 1;")
    with pytest.raises(MigrationError, match="depends on 0002, which is not an earlier migration"):
        check_dependencies(load_migrations(tmp_path))


def test_no_transaction_marker_is_read(tmp_path):
    (tmp_path / "0001_build_index.sql").write_text(
        "-- cartrita: no-transaction\nCREATE INDEX CONCURRENTLY i ON t (a);"
    )
    assert load_migrations(tmp_path)[0].transactional is False
