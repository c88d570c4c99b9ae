"""v1's credentials as Kubernetes Secrets: PostgreSQL, Redis, and the remaining application keys.

Each Secret is immutable and named with a hash of its content, so a changed credential is a new
Secret (and a rollout), never an in-place edit. Only key names and fingerprints leave this module.
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass
from urllib.parse import quote

from cartrita_assets.envfile import V1Settings
from cartrita_assets.redaction import fingerprint

LABELS = {
    "app.kubernetes.io/part-of": "cartrita",
    "app.kubernetes.io/managed-by": "cartrita-assets",
}


@dataclass(frozen=True)
class SecretSet:
    """The three Secrets k8s_secrets creates."""

    postgres: dict[str, object]
    redis: dict[str, object]
    app: dict[str, object]

    def objects(self) -> list[dict[str, object]]:
        """The Secret objects, PostgreSQL first."""
        return [self.postgres, self.redis, self.app]

    def names(self) -> dict[str, str]:
        """role ("postgres", "redis", "app") -> the hash-suffixed Secret name."""
        return {
            role: str(obj["metadata"]["name"])  # type: ignore[index]
            for role, obj in zip(("postgres", "redis", "app"), self.objects(), strict=True)
        }

    def fingerprints(self) -> dict[str, dict[str, str]]:
        """Secret name -> key -> sha256 fingerprint of the value (safe to show)."""
        out: dict[str, dict[str, str]] = {}
        for obj in self.objects():
            data: dict[str, str] = obj.get("data") or {}  # type: ignore[assignment]
            out[str(obj["metadata"]["name"])] = {  # type: ignore[index]
                key: fingerprint(base64.b64decode(value).decode()) for key, value in data.items()
            }
        return out


def _secret(base: str, namespace: str, values: dict[str, str]) -> dict[str, object]:
    digest = hashlib.sha256(json.dumps(values, sort_keys=True).encode()).hexdigest()[:10]
    secret: dict[str, object] = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": f"{base}-{digest}", "namespace": namespace, "labels": dict(LABELS)},
        "type": "Opaque",
        "immutable": True,
    }
    if values:  # the server stores `data: {}` as no data: sending it would look like a change
        secret["data"] = {
            k: base64.b64encode(v.encode()).decode() for k, v in sorted(values.items())
        }
    return secret


def same_secret(live: dict[str, object] | None, wanted: dict[str, object]) -> bool:
    """Whether a live Secret already holds exactly what ``wanted`` asks for.

    Args:
        live: the Secret as the server returns it, or None when there is none.
        wanted: the Secret to apply.

    Returns:
        True when type, immutability and data (no data and empty data alike) are equal.
    """
    if live is None:
        return False
    return all(
        (live.get(key) or None) == (wanted.get(key) or None)
        for key in ("type", "immutable", "data", "stringData")
    )


def build_secrets(v1: V1Settings, namespace: str, redis_password: str) -> SecretSet:
    """The Secrets for v2 from v1's settings.

    Args:
        v1: v1's settings (from its ``.env``).
        namespace: where the Secrets live.
        redis_password: v2 Redis's password (v1's when it has one).
    """
    pg = v1.postgres
    service = f"postgres.{namespace}.svc.cluster.local"
    user, password, dbname = (quote(v, safe="") for v in (pg.user, pg.password, pg.dbname))
    postgres = {
        "POSTGRES_USER": pg.user,
        "POSTGRES_PASSWORD": pg.password,
        "POSTGRES_DB": pg.dbname,
        "DATABASE_URL": f"postgresql://{user}:{password}@{service}:5432/{dbname}",
    }
    db = v1.redis.db if v1.redis else 0
    redis_host = f"redis.{namespace}.svc.cluster.local"
    redis = {
        "REDIS_PASSWORD": redis_password,
        "REDIS_URL": f"redis://:{quote(redis_password, safe='')}@{redis_host}:6379/{db}",
    }
    return SecretSet(
        postgres=_secret("cartrita-postgres", namespace, postgres),
        redis=_secret("cartrita-redis", namespace, redis),
        app=_secret("cartrita-app", namespace, dict(v1.other_keys)),
    )
