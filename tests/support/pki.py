"""Throwaway certificates for the test control plane, made with ``openssl``.

Keys are files in a 0700 folder, created 0600; no key ever appears on a command line (openssl
reads and writes them by path). Everything is valid for two days and trusted by nothing else.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

DAYS = "2"


@dataclass(frozen=True)
class Pki:
    """Paths of the CA, the serving and client certificates and the service-account keys."""

    folder: Path

    def path(self, name: str) -> Path:
        """``<folder>/<name>``."""
        return self.folder / name


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


def _key(path: Path) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.close(fd)
    curve = "ec_paramgen_curve:P-256"
    _openssl("genpkey", "-algorithm", "EC", "-pkeyopt", curve, "-out", str(path))


def _signed(pki: Pki, name: str, subject: str, extensions: str) -> None:
    key, csr, ext = pki.path(f"{name}.key"), pki.path(f"{name}.csr"), pki.path(f"{name}.ext")
    _key(key)
    ext.write_text(extensions)
    _openssl("req", "-new", "-key", str(key), "-subj", subject, "-out", str(csr))
    _openssl("x509", "-req", "-in", str(csr), "-CA", str(pki.path("ca.crt")),
             "-CAkey", str(pki.path("ca.key")), "-CAcreateserial", "-days", DAYS,
             "-extfile", str(ext), "-out", str(pki.path(f"{name}.crt")))  # fmt: skip


def make_pki(folder: Path) -> Pki:
    """A CA, a serving certificate for 127.0.0.1, an admin client certificate in the
    ``system:masters`` group, and a service-account signing key pair.

    Args:
        folder: created 0700; receives ca.*, server.*, admin.*, sa.key and sa.pub.
    """
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    pki = Pki(folder)
    _key(pki.path("ca.key"))
    _openssl("req", "-x509", "-new", "-key", str(pki.path("ca.key")), "-days", DAYS,
             "-subj", "/CN=cartrita-test-ca", "-out", str(pki.path("ca.crt")))  # fmt: skip
    _signed(pki, "server", "/CN=kube-apiserver",
            "subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes.default.svc\n"
            "extendedKeyUsage=serverAuth\n")  # fmt: skip
    _signed(pki, "admin", "/O=system:masters/CN=cartrita-test-admin",
            "extendedKeyUsage=clientAuth\n")  # fmt: skip
    _key(pki.path("sa.key"))
    _openssl("pkey", "-in", str(pki.path("sa.key")), "-pubout", "-out", str(pki.path("sa.pub")))
    return pki
