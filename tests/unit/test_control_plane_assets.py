"""How the test suite finds the control plane's binaries (support/control_plane.py)."""

from __future__ import annotations

import hashlib
import lzma

import pytest
from support import control_plane
from support.control_plane import BINARIES, ControlPlaneError, assets_or_skip, find_assets


def shipped(folder, tamper: str | None = None):
    """A folder shaped like ../shared/k8s-control-plane with tiny stand-in binaries."""
    folder.mkdir()
    sums = []
    for name in BINARIES:
        content = f"#!/bin/sh\necho {name}\n".encode()
        packed = content + b"tampered" if name == tamper else content
        (folder / f"{name}.xz").write_bytes(lzma.compress(packed, format=lzma.FORMAT_XZ))
        sums.append(f"{hashlib.sha256(content).hexdigest()}  {name}")
    (folder / "SHA256SUMS").write_text("\n".join(sums) + "\n")
    return folder


def test_the_shipped_binaries_are_unpacked_once_and_checked(tmp_path):
    source = shipped(tmp_path / "shipped")
    folder = control_plane.unpack(source, tmp_path / "cache")
    assert folder.parent == tmp_path / "cache" and folder.name.startswith("k8s-")
    assert (folder / "etcd").read_bytes() == b"#!/bin/sh\necho etcd\n"
    assert all((folder / b).stat().st_mode & 0o111 for b in BINARIES)
    assert control_plane.unpack(source, tmp_path / "cache") == folder


def test_a_binary_that_does_not_match_its_sum_is_refused(tmp_path):
    source = shipped(tmp_path / "shipped", tamper="kube-apiserver")
    with pytest.raises(ControlPlaneError, match="kube-apiserver.xz does not unpack to the sum"):
        control_plane.unpack(source, tmp_path / "cache")
    assert not list((tmp_path / "cache").rglob("kube-apiserver*"))


def test_kubebuilder_assets_must_hold_every_binary(tmp_path, monkeypatch):
    (tmp_path / "etcd").write_text("")
    (tmp_path / "etcd").chmod(0o755)
    monkeypatch.setenv("KUBEBUILDER_ASSETS", str(tmp_path))
    with pytest.raises(ControlPlaneError, match="lacks kube-apiserver, kube-controller-manager"):
        find_assets()


def test_no_binaries_skip_with_how_to_get_them_and_fail_under_ci(tmp_path, monkeypatch):
    monkeypatch.delenv("KUBEBUILDER_ASSETS", raising=False)
    monkeypatch.setattr(control_plane, "find_assets", lambda: find_assets(tmp_path / "none"))
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="KUBEBUILDER_ASSETS"):
        assets_or_skip()
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="KUBEBUILDER_ASSETS"):
        assets_or_skip()
