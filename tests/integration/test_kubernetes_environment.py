"""The kubernetes environment without a cluster: what it refuses before it needs one.

Its runs end to end (forward, again, rollback, forward) are in tests/k8s/, against a real API
server.
"""

from __future__ import annotations

from pathlib import Path

import pytest

pytestmark = pytest.mark.integration


def test_no_v1_env_file_is_an_error_in_kubernetes(test_dir):
    from cartrita_assets.errors import EnvFileError
    from cartrita_assets.resources.v1 import V1Source

    source = V1Source(default_env_file=str(test_dir / "missing.env"), allow_demo=False)
    with pytest.raises(EnvFileError, match="demo v1 is off"):
        source.settings()
    assert not Path(test_dir / "demo-v1").exists()
