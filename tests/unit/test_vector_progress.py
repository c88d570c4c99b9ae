"""The progress line a long embedding run writes to the run log every few seconds."""

from cartrita_assets.vectors.sync import REPORT_EVERY, progress_line


def test_progress_line_gives_rows_rate_and_eta() -> None:
    assert progress_line(1200, 5183, 38.7) == ("embedded 1200/5183 (23%), 31.0 rows/s, ETA 2m08s")
    assert progress_line(5183, 5183, 100.0).endswith("done")
    assert progress_line(0, 10, 0.0).endswith("ETA unknown")
    assert REPORT_EVERY <= 10
