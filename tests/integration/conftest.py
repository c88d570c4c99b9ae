"""Fixtures shared by the integration tests of the vector library and the search functions."""

from __future__ import annotations

import pytest

from cartrita_assets.pg.connect import connect


@pytest.fixture
def db(v2, session_v2):
    """A migrated empty database (a clone of the run's migrated template) on the test's v2, in a
    session opened after it was made (so the database's defaults apply); ``db.settings`` opens
    more sessions."""
    session_v2.migrated_database("vec")
    settings = v2.admin("vec")
    with connect(settings, role="test") as conn:
        conn.settings = settings  # type: ignore[attr-defined]
        yield conn
