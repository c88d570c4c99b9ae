"""Where integration reports are written."""

import dagster as dg
from pydantic import Field


class ReportStore(dg.ConfigurableResource):
    """The reports folder: each integration_report run writes ``<root>/<timestamp>-<run>/``."""

    root: str = Field(default="reports", description="The reports folder (relative to the cwd).")
