"""A real Kubernetes control plane for the tests: etcd, kube-apiserver, kube-controller-manager.

envtest's convention: the binaries live in the folder ``$KUBEBUILDER_ASSETS``. When that is not
set, the xz-compressed binaries in ``<repo>/../shared/k8s-control-plane`` are unpacked once into
``~/.cache/cartrita-assets/k8s-<sha>`` and checked against their ``SHA256SUMS``.

`ControlPlane` starts the three servers on free loopback ports with a throwaway CA, a serving
certificate and an admin client certificate (``O=system:masters``), writes a 0600 kubeconfig and
stops every process it started by its PID. There is no kubelet, scheduler or proxy: see
``support.kubelet`` for the part of a kubelet the tests need.
"""

from __future__ import annotations

import lzma
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from cartrita_assets.backup.manifest import sha256_file
from support.pki import Pki, make_pki
from support.ports import free_port

BINARIES = ("etcd", "kube-apiserver", "kube-controller-manager")
SHIPPED = Path(__file__).resolve().parents[2].parent / "shared" / "k8s-control-plane"
CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "cartrita-assets"
NODE_PORT_RANGE = "20000-32767"  # free_port() picks below 32000: local servers stand in there
HOW_TO_GET = (
    "The k8s tests need kube-apiserver, kube-controller-manager and etcd: set KUBEBUILDER_ASSETS "
    f"to a folder holding them, or put the xz-compressed binaries and SHA256SUMS in {SHIPPED} "
    "(see its README.md)."
)


class ControlPlaneError(RuntimeError):
    """The control plane's binaries are missing or damaged, or a server did not start."""


def _sums(shipped: Path) -> dict[str, str]:
    lines = (shipped / "SHA256SUMS").read_text().split("\n")
    pairs = (line.split() for line in lines if line.strip())
    return {name.lstrip("*"): digest for digest, name in pairs}


def _unpack_one(source: Path, target: Path, digest: str) -> None:
    if target.exists() and sha256_file(target) == digest:
        return
    # a name of this process's own: two test runs (or workers) may unpack at the same time
    partial = target.with_name(f"{target.name}.partial-{os.getpid()}")
    with lzma.open(source) as packed, partial.open("wb") as out:
        shutil.copyfileobj(packed, out, 1 << 20)
    if sha256_file(partial) != digest:
        partial.unlink()
        raise ControlPlaneError(f"{source} does not unpack to the sum SHA256SUMS gives for it.")
    partial.chmod(0o755)
    partial.replace(target)


def unpack(shipped: Path = SHIPPED, cache: Path = CACHE) -> Path:
    """Unpack the shipped binaries into a cache folder named by their sums; return it.

    Args:
        shipped: the folder with ``<binary>.xz`` and ``SHA256SUMS``.
        cache: where unpacked folders are kept from one test run to the next.

    Raises:
        ControlPlaneError: a sum is missing or a binary does not match its sum.
    """
    sums = _sums(shipped)
    key = sha256_file(shipped / "SHA256SUMS")[:12]
    folder = cache / f"k8s-{key}"
    folder.mkdir(parents=True, exist_ok=True)
    for name in BINARIES:
        if name not in sums:
            raise ControlPlaneError(f"{shipped}/SHA256SUMS has no sum for {name}.")
        _unpack_one(shipped / f"{name}.xz", folder / name, sums[name])
    return folder


def assets_or_skip() -> Path:
    """The binaries' folder; without one the test is skipped, or fails under ``CI=true``."""
    assets = find_assets()
    if assets is not None:
        return assets
    if os.environ.get("CI", "").strip().lower() == "true":
        pytest.fail(HOW_TO_GET, pytrace=False)
    pytest.skip(HOW_TO_GET)


def find_assets(shipped: Path = SHIPPED) -> Path | None:
    """``$KUBEBUILDER_ASSETS`` if set, else the unpacked shipped binaries, else None."""
    named = os.environ.get("KUBEBUILDER_ASSETS")
    if named:
        folder = Path(named)
        missing = [b for b in BINARIES if not os.access(folder / b, os.X_OK)]
        if missing:
            raise ControlPlaneError(f"KUBEBUILDER_ASSETS={folder} lacks {', '.join(missing)}.")
        return folder
    if all((shipped / f"{b}.xz").is_file() for b in BINARIES) and (shipped / "SHA256SUMS").exists():
        return unpack(shipped)
    return None


def write_kubeconfig(path: Path, server: str, pki: Pki) -> Path:
    """A 0600 kubeconfig for the admin client certificate (paths, not inline keys)."""
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "test", "cluster": {
            "server": server, "certificate-authority": str(pki.path("ca.crt"))}}],
        "users": [{"name": "admin", "user": {
            "client-certificate": str(pki.path("admin.crt")),
            "client-key": str(pki.path("admin.key"))}}],
        "contexts": [{"name": "test", "context": {"cluster": "test", "user": "admin"}}],
        "current-context": "test",
    }  # fmt: skip
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        yaml.safe_dump(config, handle)
    return path


class ControlPlane:
    """etcd + kube-apiserver + kube-controller-manager under ``folder``, on free loopback ports.

    Attributes:
        kubeconfig: the admin kubeconfig (0600), set once `start` returns.
        server: the API server's URL.
    """

    def __init__(self, assets: Path, folder: Path) -> None:
        self.assets = assets
        self.folder = folder
        self.kubeconfig = folder / "admin.kubeconfig"
        self.server = ""
        self._procs: list[tuple[str, subprocess.Popen[bytes]]] = []

    def start(self, timeout: float = 60.0) -> None:
        """Start the three servers and wait until the API server serves clients.

        Raises:
            ControlPlaneError: a server exited or the API server was not ready in time; the
                message ends with the tail of that server's log.
        """
        self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        pki = make_pki(self.folder / "pki")
        etcd_url = self._start_etcd()
        api_port = free_port()
        self.server = f"https://127.0.0.1:{api_port}"
        self._spawn("kube-apiserver", _apiserver_args(etcd_url, api_port, pki, self.folder))
        write_kubeconfig(self.kubeconfig, self.server, pki)
        self._spawn("kube-controller-manager", _controller_args(self.kubeconfig, pki))
        self._wait_ready(timeout)

    def stop(self) -> None:
        """Stop every server this object started (newest first): SIGTERM, then SIGKILL."""
        for _name, proc in reversed(self._procs):
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        self._procs.clear()

    def log_paths(self) -> list[Path]:
        """The servers' log files."""
        return sorted(self.folder.glob("*.log"))

    def _start_etcd(self) -> str:
        client, peer = free_port(), free_port()
        url, peer_url = f"http://127.0.0.1:{client}", f"http://127.0.0.1:{peer}"
        self._spawn("etcd", ["--data-dir", str(self.folder / "etcd"), "--name", "test",
                             "--listen-client-urls", url, "--advertise-client-urls", url,
                             "--listen-peer-urls", peer_url,
                             "--initial-advertise-peer-urls", peer_url,
                             "--initial-cluster", f"test={peer_url}"])  # fmt: skip
        return url

    def _spawn(self, name: str, args: list[str]) -> None:
        log = (self.folder / f"{name}.log").open("wb")
        proc = subprocess.Popen([str(self.assets / name), *args], stdout=log,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)  # fmt: skip
        log.close()
        self._procs.append((name, proc))

    def _wait_ready(self, timeout: float) -> None:
        from kubernetes import client, config

        api = client.CoreV1Api(config.new_client_from_config(config_file=str(self.kubeconfig)))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._check_alive()
            try:
                api.read_namespaced_service_account("default", "default")
                return
            except Exception:  # not listening yet, or the account not made yet
                time.sleep(0.25)
        raise ControlPlaneError(f"The API server was not ready in {timeout:.0f} s." + self._tail())

    def _check_alive(self) -> None:
        for name, proc in self._procs:
            if proc.poll() is not None:
                raise ControlPlaneError(f"{name} exited with {proc.returncode}." + self._tail(name))

    def _tail(self, name: str = "kube-apiserver") -> str:
        lines = (self.folder / f"{name}.log").read_text(errors="replace").splitlines()
        return "\n" + "\n".join(lines[-15:])


def _apiserver_args(etcd_url: str, port: int, pki: Pki, folder: Path) -> list[str]:
    return [
        "--etcd-servers", etcd_url, "--bind-address", "127.0.0.1",
        "--advertise-address", "127.0.0.1", "--secure-port", str(port),
        "--cert-dir", str(folder / "apiserver-certs"),
        "--tls-cert-file", str(pki.path("server.crt")),
        "--tls-private-key-file", str(pki.path("server.key")),
        "--client-ca-file", str(pki.path("ca.crt")),
        "--authorization-mode", "RBAC",
        "--service-account-key-file", str(pki.path("sa.pub")),
        "--service-account-signing-key-file", str(pki.path("sa.key")),
        "--service-account-issuer", "https://kubernetes.default.svc.cluster.local",
        "--service-cluster-ip-range", "10.96.0.0/16",
        "--service-node-port-range", NODE_PORT_RANGE,
        "--endpoint-reconciler-type", "none",
    ]  # fmt: skip


def _controller_args(kubeconfig: Path, pki: Pki) -> list[str]:
    return [
        "--kubeconfig", str(kubeconfig), "--controllers", "*", "--leader-elect=false",
        "--secure-port", "0", "--service-account-private-key-file", str(pki.path("sa.key")),
        "--root-ca-file", str(pki.path("ca.crt")),
    ]  # fmt: skip
