"""Fixtures shared by the integration tests of the vector library and the search functions."""

from __future__ import annotations

import pytest

from cartrita_assets.paths import data_path
from cartrita_assets.pg.connect import connect
from cartrita_assets.schema import MigrationRunner


@pytest.fixture
def db(v2):
    """A migrated empty database on the test's own v2 server, in a session opened after the
    migrations (so the database's defaults apply); ``db.settings`` opens more sessions."""
    v2.ensure_running(lambda _m: None)
    with connect(v2.admin(), role="test") as conn:
        conn.execute("CREATE DATABASE vec")
    settings = v2.admin("vec")
    MigrationRunner(settings, data_path("sql") / "migrations").migrate()
    with connect(settings, role="test") as conn:
        conn.settings = settings  # type: ignore[attr-defined]
        yield conn
