"""Jobs: the forward migration subset (and, as they land, rollback and re-index)."""

import dagster as dg

FORWARD_ASSETS = [
    "v1_backup",
    "k8s_secrets",
    "pgvector_cluster",
    "restored_db",
    "schema_version",
]

forward_migration_job = dg.define_asset_job(
    "forward_migration_job",
    selection=dg.AssetSelection.assets(*FORWARD_ASSETS),
    description=(
        "Back up v1, bring up v2, restore and verify: every asset with its checks; a failing "
        "blocking check stops what is downstream."
    ),
    tags={"cartrita/kind": "forward"},
)
