"""environments.py is the one place settings are read: the namespace reaches both targets."""

from __future__ import annotations

import pytest

from cartrita_assets.environments import build_resources, namespace_from_env
from cartrita_assets.errors import CartritaError


@pytest.mark.parametrize("env", ["local", "kubernetes"])
def test_cartrita_namespace_reaches_the_v2_target(env, monkeypatch, tmp_path):
    monkeypatch.setenv("CARTRITA_NAMESPACE", "cartrita-alt")
    assert build_resources(env, tmp_path)["v2"].namespace == "cartrita-alt"
    monkeypatch.delenv("CARTRITA_NAMESPACE")
    assert build_resources(env, tmp_path)["v2"].namespace == "data-stack"


@pytest.mark.parametrize("bad", ["Data_Stack", "-x", "a" * 64, "ns.with.dots"])
def test_a_namespace_kubernetes_would_refuse_is_refused_by_name(bad, monkeypatch):
    monkeypatch.setenv("CARTRITA_NAMESPACE", bad)
    with pytest.raises(CartritaError, match="CARTRITA_NAMESPACE=.* is not a Kubernetes namespace"):
        namespace_from_env()
