"""The one place that turns the environment (``CARTRITA_ENV``) into resources, and that reads
every ``CARTRITA_*`` setting (one parser for whole numbers, one for yes/no).

``local`` (default): v2 is a pair of servers under the state folder; without a v1 ``.env`` v1 is
the demo. ``kubernetes``: v2 lives in the cluster and a missing v1 ``.env`` is an error.

Importing this module does not import Dagster (the resources are imported where they are built):
``cartrita forward`` finds and checks v1's ``.env`` in a fraction of a second, before it loads the
graph.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cartrita_assets.errors import CartritaError, EnvFileError

if TYPE_CHECKING:  # the CLI checks v1's .env from here before Dagster is imported
    import dagster as dg

    from cartrita_assets.backup.v2_store import V2BackupStore
    from cartrita_assets.resources.embedder import EmbedderResource
    from cartrita_assets.resources.serving import ServingResource
    from cartrita_assets.resources.v1 import V1Source
    from cartrita_assets.vectors.invalidation import KeyPattern

ENVIRONMENTS = ("local", "kubernetes")
TRUE = {"1", "true", "yes", "on"}
CRON_ENV = "CARTRITA_HEALTH_CHECK_CRON"
DEFAULT_CRON = "0 * * * *"
ALERT_WEBHOOK_ENV = "CARTRITA_ALERT_WEBHOOK_URL"
V2_BACKUP_CRON_ENV = "CARTRITA_V2_BACKUP_CRON"
DEFAULT_V2_BACKUP_CRON = "0 3 * * *"
_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
_DNS_SUBDOMAIN = re.compile(r"(?=.{1,253}\Z)[a-z0-9]([-a-z0-9.]*[a-z0-9])?")


def current_environment() -> str:
    """``$CARTRITA_ENV``, validated (default ``local``)."""
    env = os.environ.get("CARTRITA_ENV", "local").strip().lower()
    if env not in ENVIRONMENTS:
        raise CartritaError(
            f"CARTRITA_ENV={env!r} is not an environment; use one of {', '.join(ENVIRONMENTS)}."
        )
    return env


def namespace_from_env() -> str:
    """``$CARTRITA_NAMESPACE`` (default ``data-stack``): the namespace of every v2 object, of
    the in-cluster addresses in the Secrets and of the migration Job, also for the CLI."""
    from cartrita_assets.cluster.k8s.manifests import DEFAULT_NAMESPACE

    namespace = os.environ.get("CARTRITA_NAMESPACE", "").strip() or DEFAULT_NAMESPACE
    if not _DNS_LABEL.fullmatch(namespace):
        raise CartritaError(
            f"CARTRITA_NAMESPACE={namespace!r} is not a Kubernetes namespace name: use at most 63 "
            "lowercase letters, digits and '-', starting and ending with a letter or digit."
        )
    return namespace


def state_dir() -> Path:
    """The state folder, where everything the project writes at run time goes:
    ``$CARTRITA_STATE_DIR``, or ``.cartrita/`` in the current directory."""
    configured = setting("CARTRITA_STATE_DIR")
    return Path(configured).expanduser().resolve() if configured else Path.cwd() / ".cartrita"


def setting(name: str, default: str = "") -> str:
    """``$name`` without surrounding blanks, or ``default`` when unset or empty."""
    return os.environ.get(name, "").strip() or default


def int_setting(name: str, default: int, minimum: int = 0) -> int:
    """``$name`` as a whole number (``default`` when unset or empty).

    Raises:
        CartritaError: naming the variable when it is not a whole number >= ``minimum``.
    """
    raw = setting(name)
    if not raw:
        return default
    if not raw.isdigit() or int(raw) < minimum:
        raise CartritaError(f"{name} must be a whole number >= {minimum}, got {raw!r}.")
    return int(raw)


def bool_setting(name: str) -> bool:
    """``$name`` is one of 1, true, yes, on (any case)."""
    return setting(name).lower() in TRUE


def index_rule() -> dict[str, int]:
    """The index rule's thresholds the automations pass to embeddings_index:
    ``CARTRITA_EXACT_BELOW`` and ``CARTRITA_HNSW_MAX_BYTES`` (defaults: the asset's)."""
    from cartrita_assets.vectors.indexing import EXACT_BELOW, HNSW_MAX_BYTES

    return {
        "exact_below": int_setting("CARTRITA_EXACT_BELOW", EXACT_BELOW),
        "hnsw_max_bytes": int_setting("CARTRITA_HNSW_MAX_BYTES", HNSW_MAX_BYTES, minimum=1),
    }


def health_check_cron() -> str:
    """``$CARTRITA_HEALTH_CHECK_CRON`` (default hourly, ``0 * * * *``), validated.

    Raises:
        CartritaError: naming the variable when the value is not a cron expression.
    """
    return _cron(CRON_ENV, DEFAULT_CRON, "hourly")


def v2_backup_cron() -> str:
    """``$CARTRITA_V2_BACKUP_CRON`` (default daily at 03:00 UTC, ``0 3 * * *``), validated."""
    return _cron(V2_BACKUP_CRON_ENV, DEFAULT_V2_BACKUP_CRON, "daily")


def _cron(name: str, default: str, meaning: str) -> str:
    from dagster._utils.schedules import is_valid_cron_string

    cron = setting(name, default)
    if not is_valid_cron_string(cron):
        raise CartritaError(
            f"{name}={cron!r} is not a valid cron expression (five fields, e.g. "
            f"{default!r} for {meaning}). Fix or unset {name}."
        )
    return cron


def v2_backup_store(state: Path) -> V2BackupStore:
    """Where v2's backups go (``CARTRITA_V2_BACKUP_DIR``, default ``<state>/v2-backups``; in the
    kubernetes environment a volume mounted in the run's pod) and how many are kept
    (``CARTRITA_V2_BACKUP_KEEP``, default 7; ``CARTRITA_V2_BACKUP_MAX_AGE_DAYS``, default 30, 0
    for no age limit)."""
    from cartrita_assets.backup.v2_store import V2BackupStore

    return V2BackupStore(
        root=setting("CARTRITA_V2_BACKUP_DIR", str(state / "v2-backups")),
        keep=int_setting("CARTRITA_V2_BACKUP_KEEP", 7, minimum=1),
        max_age_days=int_setting("CARTRITA_V2_BACKUP_MAX_AGE_DAYS", 30),
    )


def v2_backup_run_tags() -> dict[str, str]:
    """Tags of v2_backup_job's runs. With ``CARTRITA_V2_BACKUP_PVC`` set (kubernetes: runs are
    pods of the K8sRunLauncher), the run's pod mounts that PersistentVolumeClaim at
    ``CARTRITA_V2_BACKUP_DIR``, so the backups outlive the pod.

    Raises:
        CartritaError: naming the variable when the claim name or the folder is not usable.
    """
    claim = setting("CARTRITA_V2_BACKUP_PVC")
    if not claim:
        return {}
    if not _DNS_SUBDOMAIN.fullmatch(claim):
        raise CartritaError(
            f"CARTRITA_V2_BACKUP_PVC={claim!r} is not a PersistentVolumeClaim name: use lowercase "
            "letters, digits, '-' and '.', starting and ending with a letter or digit."
        )
    folder = setting("CARTRITA_V2_BACKUP_DIR")
    if not folder.startswith("/"):
        raise CartritaError(
            "CARTRITA_V2_BACKUP_PVC is set, so set CARTRITA_V2_BACKUP_DIR to the absolute path "
            "the claim is mounted at in the run's pod (e.g. /var/lib/cartrita/v2-backups)."
        )
    volume = "cartrita-v2-backups"
    config = {
        "container_config": {"volume_mounts": [{"name": volume, "mount_path": folder}]},
        "pod_spec_config": {
            "volumes": [{"name": volume, "persistent_volume_claim": {"claim_name": claim}}]
        },
    }
    return {"dagster-k8s/config": json.dumps(config, sort_keys=True)}


def cache_key_patterns() -> dict[str, tuple[KeyPattern, ...]]:
    """``$CARTRITA_CACHE_KEY_PATTERNS``: the application's Redis keys derived from each embedding
    source's rows (default ``conversations=cache:conversation:{id}``; ``none``: no invalidation).

    Raises:
        CacheRuleError: naming the part of the value that is wrong.
    """
    from cartrita_assets.vectors.invalidation import DEFAULT_PATTERNS, parse_rule

    return parse_rule(setting("CARTRITA_CACHE_KEY_PATTERNS", DEFAULT_PATTERNS))


def reports_dir() -> str:
    """``$CARTRITA_REPORTS_DIR`` (default ``reports``): where integration reports are written."""
    return setting("CARTRITA_REPORTS_DIR", "reports")


def v1_env_file_options(env: str) -> dict[str, Any]:
    """Where ``env`` looks for v1's ``.env``, as ``V1Source`` fields: ``$CARTRITA_V1_ENV_FILE``
    (``--env-file``), else ``./.env``; without either, the demo v1 in ``local`` only."""
    return {
        "env_file": os.environ.get("CARTRITA_V1_ENV_FILE") or None,
        "default_env_file": ".env",
        "allow_demo": env == "local",
    }


def resolve_v1_env_file(
    env_file: str | None, default_env_file: str, allow_demo: bool
) -> Path | None:
    """v1's environment file in use, or None when v1 is the demo (``V1Source`` resolves it here).

    Raises:
        EnvFileError: ``env_file`` does not exist, or there is no file and no demo.
    """
    if env_file:
        path = Path(env_file).expanduser()
        if not path.exists():
            raise EnvFileError(
                f"{path}: the v1 environment file does not exist. Fix CARTRITA_V1_ENV_FILE "
                "(or --env-file) to name v1's .env."
            )
        return path
    default = Path(default_env_file)
    if default.exists():
        return default
    if not allow_demo:
        raise EnvFileError(
            f"{default.resolve()}: no v1 environment file, and the demo v1 is off in this "
            "environment. Set CARTRITA_V1_ENV_FILE to v1's .env."
        )
    return None


def v1_env_file(env: str | None = None) -> Path | None:
    """v1's ``.env`` the run will read (None: the demo v1), found exactly as the ``v1`` resource
    of :func:`build_resources` finds it, without importing Dagster."""
    return resolve_v1_env_file(**v1_env_file_options(env or current_environment()))


def build_resources(env: str | None = None, state: Path | None = None) -> dict[str, Any]:
    """Resources for ``env`` with everything they write kept under ``state``."""
    from cartrita_assets.backup.store import BackupStore
    from cartrita_assets.cluster.v2 import LocalV2Target
    from cartrita_assets.resources.follow import FollowStore
    from cartrita_assets.resources.lock import MigrationLock
    from cartrita_assets.resources.reports import ReportStore
    from cartrita_assets.resources.v1 import V1Source

    env = env or current_environment()
    state = state or state_dir()
    if env == "kubernetes":
        return _kubernetes_resources(state)
    return {
        "v1": V1Source(
            **v1_env_file_options(env),
            demo_dir=str(state / "demo-v1"),
            demo_pg_port=int_setting("CARTRITA_DEMO_PG_PORT", 15432),
            demo_redis_port=int_setting("CARTRITA_DEMO_REDIS_PORT", 16379),
            demo_scale=int_setting("CARTRITA_DEMO_SCALE", 1),
            demo_redis_server=os.environ.get("CARTRITA_DEMO_REDIS_SERVER", ""),
        ),
        "v2": LocalV2Target(
            base_dir=str(state / "v2"),
            pg_port=int_setting("CARTRITA_V2_PG_PORT", 32432),
            redis_port=int_setting("CARTRITA_V2_REDIS_PORT", 32379),
            redis_server=os.environ.get("CARTRITA_V2_REDIS_SERVER", ""),
            namespace=namespace_from_env(),
        ),
        "backups": BackupStore(
            root=os.environ.get("CARTRITA_BACKUP_DIR") or str(state / "backups")
        ),
        "migration_lock": MigrationLock(path=str(state / "locks" / "migration.lock")),
        "v2_backups": v2_backup_store(state),
        "embedder": embedder_from_env(state),
        "reports": ReportStore(root=reports_dir()),
        "serving": serving_from_env(),
        "follow": FollowStore(root=str(state / "follow"), topology="local"),
    }


def folder_resources(
    folder: Path, v1: V1Source, v2: Any, embedder: EmbedderResource | None = None
) -> dict[str, Any]:
    """Every resource the graph needs for a ``v1`` and ``v2`` the caller built, with everything
    else (backups, lock, v2 backups, reports, follow ledger) kept under ``folder``. Reads no
    setting: for benchmarks, tests and scripted runs that start their own servers.

    Args:
        folder: where the run's files go.
        v1: the v1 source.
        v2: the v2 target (a ``LocalV2Target`` or ``KubernetesV2Target``).
        embedder: the embedding model (default: the local model with no cache).
    """
    from cartrita_assets.backup.store import BackupStore
    from cartrita_assets.backup.v2_store import V2BackupStore
    from cartrita_assets.resources.embedder import EmbedderResource
    from cartrita_assets.resources.follow import FollowStore
    from cartrita_assets.resources.lock import MigrationLock
    from cartrita_assets.resources.reports import ReportStore

    return {
        "v1": v1,
        "v2": v2,
        "backups": BackupStore(root=str(folder / "backups")),
        "migration_lock": MigrationLock(path=str(folder / "migration.lock")),
        "v2_backups": V2BackupStore(root=str(folder / "v2-backups")),
        "embedder": embedder or EmbedderResource(),
        "reports": ReportStore(root=str(folder / "reports")),
        "follow": FollowStore(root=str(folder / "follow")),
    }


def serving_from_env() -> ServingResource:
    """The local pooler and replica: ``CARTRITA_V2_POOLER_PORT`` (default 32434),
    ``CARTRITA_V2_REPLICA_PORT`` (32433), ``CARTRITA_PGBOUNCER`` (default: Debian's binary)."""
    from cartrita_assets.resources.serving import ServingResource

    return ServingResource(
        pooler_port=int_setting("CARTRITA_V2_POOLER_PORT", 32434, minimum=1),
        replica_port=int_setting("CARTRITA_V2_REPLICA_PORT", 32433, minimum=1),
        pgbouncer=setting("CARTRITA_PGBOUNCER"),
    )


def embedder_from_env(state: Path) -> EmbedderResource:
    """``CARTRITA_EMBEDDER``: ``local`` (default, the bundled model) or ``openai`` (endpoint,
    model and dimensions from ``CARTRITA_OPENAI_BASE_URL``, ``CARTRITA_OPENAI_MODEL``,
    ``CARTRITA_OPENAI_DIMENSIONS``; the key from ``OPENAI_API_KEY``). Vectors are cached under
    the state folder (``CARTRITA_EMBEDDING_CACHE``: another file, or empty for no cache)."""
    from cartrita_assets.resources.embedder import EmbedderResource

    kind = os.environ.get("CARTRITA_EMBEDDER", "local").strip().lower() or "local"
    if kind not in ("local", "openai"):
        raise CartritaError(f"CARTRITA_EMBEDDER={kind!r} is not an embedder; use local or openai.")
    cache = os.environ.get("CARTRITA_EMBEDDING_CACHE", str(state / "embedding-cache.sqlite"))
    options: dict[str, Any] = {"kind": kind, "cache_path": cache or None}
    if kind == "openai":
        for field, name in (("openai_base_url", "CARTRITA_OPENAI_BASE_URL"),
                            ("openai_model", "CARTRITA_OPENAI_MODEL")):  # fmt: skip
            if os.environ.get(name):
                options[field] = os.environ[name]
        options["openai_dimensions"] = int_setting("CARTRITA_OPENAI_DIMENSIONS", 1536)
    return EmbedderResource(**options)


def executor_for(env: str | None = None) -> dg.ExecutorDefinition:
    """Local runs keep every step in one process: faster, and the migration lock is held by it."""
    import dagster as dg

    return dg.in_process_executor


def _kubernetes_resources(state: Path) -> dict[str, Any]:
    """v1 from its .env (no demo), v2 on the cluster, the lock across run pods."""
    from cartrita_assets.backup.store import BackupStore
    from cartrita_assets.cluster.k8s_target import KubernetesV2Target
    from cartrita_assets.resources.follow import FollowStore
    from cartrita_assets.resources.lock import MigrationLock
    from cartrita_assets.resources.reports import ReportStore
    from cartrita_assets.resources.v1 import V1Source

    v1 = V1Source(**v1_env_file_options("kubernetes"))
    return {
        "v1": v1,
        "v2": KubernetesV2Target(
            v1=v1,
            kubeconfig=None,  # in-cluster config, then $KUBECONFIG, then ~/.kube/config
            context=os.environ.get("CARTRITA_KUBE_CONTEXT") or None,
            namespace=namespace_from_env(),
            node_host=os.environ.get("CARTRITA_NODE_HOST", "localhost"),
            pg_node_port=int_setting("CARTRITA_V2_PG_PORT", 32432),
            redis_node_port=int_setting("CARTRITA_V2_REDIS_PORT", 32379),
            storage_class=os.environ.get("CARTRITA_STORAGE_CLASS") or None,
            state_dir=str(state / "kubernetes"),
        ),
        "backups": BackupStore(
            root=os.environ.get("CARTRITA_BACKUP_DIR") or str(state / "backups")
        ),
        "migration_lock": MigrationLock(
            path=str(state / "locks" / "migration.lock"), across_processes=True
        ),
        "v2_backups": v2_backup_store(state),
        "embedder": embedder_from_env(state),
        "reports": ReportStore(root=reports_dir()),
        "serving": serving_from_env(),
        "follow": FollowStore(
            root=str(state / "follow"),
            topology="kubernetes",
            v1_host_for_v2=os.environ.get("CARTRITA_V1_HOST_FOR_V2", ""),
            reach_probe_timeout=int_setting("CARTRITA_REACH_PROBE_TIMEOUT", 60, minimum=1),
        ),
    }
