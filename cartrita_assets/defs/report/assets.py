"""integration_report: the end of the forward migration, and a report an operator can keep."""

from dataclasses import replace
from pathlib import Path

import dagster as dg

from cartrita_assets.cluster.v2 import V2Target
from cartrita_assets.defs.common import OWNERS, progress, table_md, user_errors
from cartrita_assets.defs.facts import target_database
from cartrita_assets.defs.vectors.assets import embeddings_index
from cartrita_assets.paths import data_path
from cartrita_assets.redis_copy.client import client_for
from cartrita_assets.report.report import new_report_dir, write_report
from cartrita_assets.report.suite import run_suite
from cartrita_assets.resources.reports import ReportStore
from cartrita_assets.resources.v1 import V1Source


@dg.asset(
    group_name="v2",
    kinds={"postgres", "redis", "pgvector"},
    owners=OWNERS,
    deps=[embeddings_index],
)
def integration_report(
    context: dg.AssetExecutionContext, v1: V1Source, v2: V2Target, reports: ReportStore
) -> dg.MaterializeResult:
    """The guide's integration suites run against v2 as code (connectivity with the
    application's own credentials, migration state, vector functionality), each case named and
    timed, its searches recorded in search_performance_metrics; written to
    reports/<timestamp>/report.json, report.md and latency.svg."""
    log = progress(context)
    with user_errors():
        database = target_database(context)
        admin = v2.admin(database)
        app = v1.settings(log).postgres
        app_on_v2 = replace(admin, user=app.user, password=app.password)
        result = run_suite(
            admin,
            redis_ping=lambda: bool(client_for(v2.redis()).ping()),
            migrations=data_path("sql") / "migrations",
            log=log,
            app=app_on_v2,
        )
        folder = new_report_dir(Path(reports.root), context.run_id)
        about = {"database": database, "v2": admin.masked_dsn(), "run_id": context.run_id}
        paths = write_report(folder, result, about)
    sim50, sim95 = result.percentiles("similarity_search")
    hyb50, hyb95 = result.percentiles("hybrid_search")
    log(f"Integration report: {paths['markdown'].resolve()}")
    return dg.MaterializeResult(
        metadata={
            "report_dir": dg.MetadataValue.path(str(folder.resolve())),
            "report_md": dg.MetadataValue.path(str(paths["markdown"].resolve())),
            "cases": len(result.cases),
            "failed": len(result.failed),
            "passed": not result.failed,
            "similarity_p50_ms": round(sim50, 3),
            "similarity_p95_ms": round(sim95, 3),
            "hybrid_p50_ms": round(hyb50, 3),
            "hybrid_p95_ms": round(hyb95, 3),
            "recall_at_10": result.recall_at_10 if result.recall_at_10 is not None else -1.0,
            "results": table_md(
                ["suite", "case", "result", "ms", "detail"],
                [
                    [c.suite, c.name, "pass" if c.passed else "FAIL", c.ms, c.detail]
                    for c in result.cases
                ],
            ),  # fmt: skip
        }
    )
