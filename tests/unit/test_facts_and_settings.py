"""The one reader of recorded facts, the cutover files' naming rule and the settings parsers."""

import dagster as dg
import pytest

from cartrita_assets.defs.facts import (
    latest_metadata,
    required_metadata,
    restored_database,
    v2_database,
)
from cartrita_assets.envfile.cutover import cutover_file, v1_settings_file
from cartrita_assets.environments import bool_setting, int_setting, setting
from cartrita_assets.errors import CartritaError


def _record(instance: dg.DagsterInstance, asset: str, **metadata: object) -> None:
    instance.report_runless_asset_event(dg.AssetMaterialization(asset, metadata=metadata))


def test_latest_metadata_is_none_until_materialized_then_the_latest_values() -> None:
    instance = dg.DagsterInstance.ephemeral()
    assert latest_metadata(instance, "v1_backup") is None
    with pytest.raises(dg.Failure, match="materialize v1_backup first"):
        required_metadata(
            instance, "v1_backup", "There is no backup yet: materialize v1_backup first."
        )
    _record(instance, "v1_backup", backup_id="b1")
    _record(instance, "v1_backup", backup_id="b2", tables=3)
    assert latest_metadata(instance, "v1_backup") == {"backup_id": "b2", "tables": 3}


def test_one_answer_to_which_v2_database() -> None:
    instance = dg.DagsterInstance.ephemeral()
    assert restored_database(instance) is None
    assert (
        v2_database(instance)[0] is None and "no restored database yet" in v2_database(instance)[1]
    )
    _record(instance, "restored_db", rows=1)
    assert v2_database(instance) == (None, "restored_db's latest materialization names no database")
    _record(instance, "restored_db", database="cartrita")
    assert restored_database(instance) == "cartrita" and v2_database(instance) == ("cartrita", "")
    _record(instance, "v1_reinstated", verified=True)
    assert v2_database(instance)[0] is None and "rolled back" in v2_database(instance)[1]
    assert restored_database(instance) == "cartrita"  # what restored_db wrote stays recorded


def test_cutover_files_sit_beside_the_env_file(tmp_path) -> None:
    env = tmp_path / ".env"
    assert cutover_file(env, "v1") == tmp_path / ".env.v1"
    assert cutover_file(env, "v2") == tmp_path / ".env.v2"
    assert v1_settings_file(env) == env
    (tmp_path / ".env.v1").write_text("DB_HOST=v1\n")
    assert v1_settings_file(env) == tmp_path / ".env.v1"


def test_settings_parsers(monkeypatch) -> None:
    monkeypatch.setenv("CARTRITA_X", " 12 ")
    assert int_setting("CARTRITA_X", 5) == 12 and setting("CARTRITA_X") == "12"
    monkeypatch.setenv("CARTRITA_X", "")
    assert int_setting("CARTRITA_X", 5) == 5 and setting("CARTRITA_X", "d") == "d"
    for bad in ("abc", "-1", "0"):
        monkeypatch.setenv("CARTRITA_X", bad)
        with pytest.raises(CartritaError, match="CARTRITA_X must be a whole number >= 1"):
            int_setting("CARTRITA_X", 5, minimum=1)
    for raw, expected in (("Yes", True), ("on", True), ("1", True), ("no", False), ("", False)):
        monkeypatch.setenv("CARTRITA_FLAG", raw)
        assert bool_setting("CARTRITA_FLAG") is expected
