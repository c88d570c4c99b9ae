"""integration_report: the guide's integration suites run against v2, as a report and a check."""
