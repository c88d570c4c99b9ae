"""The integration suite's cases fail through a named error, which ``python -O`` keeps."""

import subprocess
import sys

from cartrita_assets.report.suite import SuiteResult, _Runner, expect


def _bad() -> str:
    expect(False, "PING did not answer PONG")
    return "unreachable"


def test_a_failed_expectation_fails_only_its_case() -> None:
    result = SuiteResult()
    run = _Runner(result, lambda _m: None)
    run.case("connectivity", "bad", _bad)
    run.case("connectivity", "good", lambda: "fine")
    assert [(c.name, c.passed, c.detail) for c in result.cases] == [
        ("bad", False, "PING did not answer PONG"),
        ("good", True, "fine"),
    ]
    assert not result.passed


def test_expectations_hold_under_python_optimize() -> None:
    code = (
        "from cartrita_assets.report.suite import CaseFailed, expect\n"
        "try:\n    expect(False, 'x')\nexcept CaseFailed:\n    print('failed as it should')\n"
    )
    out = subprocess.run([sys.executable, "-O", "-c", code], capture_output=True, text=True)
    assert out.stdout.strip() == "failed as it should", out.stderr
