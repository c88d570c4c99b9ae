"""Jobs: the forward migration subset (and, as they land, rollback and re-index)."""

import dagster as dg

FORWARD_ASSETS = [
    "v1_backup",
    "k8s_secrets",
    "pgvector_cluster",
    "restored_db",
    "schema_version",
    "embeddings_index",
    "integration_report",
]

forward_migration_job = dg.define_asset_job(
    "forward_migration_job",
    selection=dg.AssetSelection.assets(*FORWARD_ASSETS),
    description=(
        "Back up v1, bring up v2, restore and verify, migrate the schema, embed and index, then "
        "run the integration suite: every asset with its checks; a failing blocking check stops "
        "what is downstream."
    ),
    tags={"cartrita/kind": "forward"},
)

rollback_job = dg.define_asset_job(
    "rollback_job",
    selection=dg.AssetSelection.assets("v1_reinstated"),
    description=(
        "Check v1 against the verified backup, stop v2, restore v1 from the backup only if it "
        "differs and the run config confirms it, put .env.v1 back, verify v1."
    ),
    tags={"cartrita/kind": "rollback"},
)
