"""Every job of the project: forward migration, rollback, re-index embeddings, v2 health checks."""

import dagster as dg

from cartrita_assets.environments import v2_backup_run_tags

FORWARD_ASSETS = [
    "v1_backup",
    "k8s_secrets",
    "pgvector_cluster",
    "restored_db",
    "replication_stream",  # follow mode only (materializes when v1_backup had follow: true)
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

REINDEX_TAGS = {"cartrita/kind": "reindex"}

reindex_embeddings_job = dg.define_asset_job(
    "reindex_embeddings_job",
    selection=dg.AssetSelection.assets("embeddings_index"),
    description=(
        "embeddings_index alone, with its checks: new and changed source rows embedded (only the "
        "ids in source_ids when given), rows whose source is gone deleted, then each model's ANN "
        "index kept, rebuilt (rebuild_models) or switched by the volume rule. No migration asset "
        "runs. Launched by stale_embeddings_sensor and index_volume_sensor."
    ),
    tags=REINDEX_TAGS,
)

# The checks that stay true while v2 serves, nothing materialized: pgvector_cluster's (pgvector
# works, Redis answers), schema_version's (migrations applied and unchanged, the guide's objects
# exist) and embeddings_index's (index valid, search finds itself, recall, hybrid, freshness).
# Not restored_db's: they compare v2 with the v1 backup, which stops being true as soon as the
# application writes to v2 after the cutover. Not v1_backup's, k8s_secrets' or rollback's.
HEALTH_CHECKED_ASSETS = ("pgvector_cluster", "schema_version", "embeddings_index")

v2_health_checks_job = dg.define_asset_job(
    "v2_health_checks_job",
    selection=dg.AssetSelection.checks_for_assets(*HEALTH_CHECKED_ASSETS),
    description=(
        "Re-runs every asset check of pgvector_cluster, schema_version and embeddings_index "
        "against the live v2 without materializing anything; run hourly by "
        "v2_health_checks_schedule. A failed check is reported by the alert sensors."
    ),
    tags={"cartrita/kind": "health-checks"},
)

v2_pooler_job = dg.define_asset_job(
    "v2_pooler_job",
    selection=dg.AssetSelection.assets("v2_pooler"),
    description=(
        "v2_pooler and its check: the local PgBouncer (transaction pooling, SCRAM) in front of "
        "v2 serves the application role and the search functions; with via_pooler, .env.v2 "
        "points at it."
    ),
    tags={"cartrita/kind": "serving"},
)

v2_read_replica_job = dg.define_asset_job(
    "v2_read_replica_job",
    selection=dg.AssetSelection.assets("v2_read_replica"),
    description=(
        "v2_read_replica and its check: a streaming replica of v2 that receives the primary's "
        "writes and returns the same search results; lag in the metadata."
    ),
    tags={"cartrita/kind": "serving"},
)


v2_backup_job = dg.define_asset_job(
    "v2_backup_job",
    selection=dg.AssetSelection.assets("v2_backup"),
    description=(
        "v2_backup with its checks: a snapshot backup of v2's serving database and Redis, its "
        "restore test in a scratch database, then retention (older backups removed only after "
        "the new one verified). Run daily by v2_backup_schedule."
    ),
    # in a cluster the run's pod can mount a volume for the backups (CARTRITA_V2_BACKUP_PVC)
    tags={"cartrita/kind": "v2-backup", **v2_backup_run_tags()},
)

# Follow mode: the lag job plots the lag; the cutover job switches the application.

replication_lag_job = dg.define_asset_job(
    "replication_lag_job",
    selection=dg.AssetSelection.checks_for_assets("replication_stream"),
    description=(
        "replication_lag_is_small alone: how far v2 trails v1 in follow mode (bytes and seconds, "
        "PostgreSQL and Redis; WAL the slot keeps on v1). Run by replication_lag_sensor."
    ),
    tags={"cartrita/kind": "replication-lag"},
)

cutover_job = dg.define_asset_job(
    "cutover_job",
    selection=dg.AssetSelection.assets("v2_cutover"),
    description=(
        "Follow mode's switch: lag and DDL checked, v1 refuses writes, v2 catches up to v1's "
        "last position and Redis offset, sequences copied, replication stopped, .env.v2 "
        "written; then v2's switch-point snapshot is verified against frozen v1."
    ),
    tags={"cartrita/kind": "cutover"},
)

JOBS = [
    forward_migration_job,
    rollback_job,
    reindex_embeddings_job,
    v2_health_checks_job,
    v2_backup_job,
    v2_pooler_job,
    v2_read_replica_job,
    replication_lag_job,
    cutover_job,
]
