"""The integration report's latency chart: an SVG box plot written without a plotting package."""

from __future__ import annotations

from pathlib import Path
from xml.etree import ElementTree

from cartrita_assets.report.report import latency_chart
from cartrita_assets.report.suite import SuiteResult

SVG = "{http://www.w3.org/2000/svg}"


def _chart(tmp_path: Path, latencies: dict[str, list[float]]) -> ElementTree.Element:
    result = SuiteResult()
    result.latencies_ms = latencies
    path = tmp_path / "latency.svg"
    latency_chart(result, path)
    return ElementTree.parse(path).getroot()


def test_one_box_per_kind_with_its_percentiles_and_outliers_as_dots(tmp_path):
    similarity = [1.0, 2.0, 2.0, 3.0, 3.0, 4.0, 40.0]  # 40 is beyond 1.5 IQR
    chart = _chart(tmp_path, {"similarity_search": similarity, "hybrid_search": [5.0] * 10})
    assert chart.tag == f"{SVG}svg"
    boxes = chart.findall(f".//{SVG}rect[@class='box']")
    assert len(boxes) == 2
    texts = [t.text for t in chart.iter(f"{SVG}text")]
    assert "similarity_search" in texts and "hybrid_search" in texts
    assert "p50 3.00 ms" in texts and "p95 5.00 ms" in texts  # hybrid: every value is 5
    assert len(chart.findall(f".//{SVG}circle")) == 1  # the one outlier
    assert float(boxes[1].get("width")) == 0  # no spread: a box of width 0, still drawn


def test_no_searches_say_so_and_names_are_escaped(tmp_path):
    assert "no searches ran" in [t.text for t in _chart(tmp_path, {}).iter(f"{SVG}text")]
    chart = _chart(tmp_path, {"a<b&c": [1.0, 2.0]})
    assert "a<b&c" in [t.text for t in chart.iter(f"{SVG}text")]
