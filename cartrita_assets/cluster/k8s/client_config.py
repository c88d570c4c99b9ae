"""Where the cluster's client configuration comes from, the way lightkube finds it.

An explicit kubeconfig is used alone (it never falls back to another cluster). Otherwise: the
in-cluster service account (when ``KUBERNETES_SERVICE_HOST`` is set and no context is asked
for), then ``$KUBECONFIG`` (alone, when set), then ``~/.kube/config``.
"""

from __future__ import annotations

import os
from pathlib import Path

from kubernetes import client as k8s_client
from kubernetes import config as k8s_config

from cartrita_assets.cluster.k8s.errors import ClusterError, _no_config_message, _short

Loaded = tuple[k8s_client.ApiClient, str]


def load_api_client(kubeconfig: str | None = None, context: str | None = None) -> Loaded:
    """The first configuration that loads, as an ``ApiClient`` and where it came from.

    Args:
        kubeconfig: path of a kubeconfig file to use instead of the environment.
        context: a kubeconfig context; None means the file's current context.

    Returns:
        The client and a description of its source (never a credential).

    Raises:
        ClusterError: no configuration works; the message lists what was tried.
    """
    if kubeconfig:
        return _from_kubeconfig(kubeconfig, context, "the kubeconfig given")
    tried: list[str] = []
    if os.environ.get("KUBERNETES_SERVICE_HOST") and not context:
        try:
            return _from_incluster()
        except ClusterError as exc:
            tried.append(str(exc))
    elif context:
        tried.append("in-cluster service account: skipped, a kubeconfig context was asked for")
    else:
        tried.append("in-cluster service account: KUBERNETES_SERVICE_HOST is not set")
    env = os.environ.get("KUBECONFIG")
    if env:
        return _from_kubeconfig(env, context, "$KUBECONFIG", tried)
    tried.append("$KUBECONFIG: not set")
    default = Path.home() / ".kube" / "config"
    if default.is_file():
        return _from_kubeconfig(str(default), context, str(default), tried)
    tried.append(f"{default}: does not exist")
    raise ClusterError(_no_config_message(tried))


def _from_incluster() -> Loaded:
    configuration = k8s_client.Configuration()
    try:
        k8s_config.load_incluster_config(client_configuration=configuration)
    except Exception as exc:  # the loader raises ConfigException and OS errors
        raise ClusterError(f"in-cluster service account: {_short(exc)}") from None
    return k8s_client.ApiClient(configuration), "in-cluster service account"


def _from_kubeconfig(
    path: str, context: str | None, label: str, tried: list[str] | None = None
) -> Loaded:
    configuration = k8s_client.Configuration()
    where = f"{label} ({path})" if label != path else path
    source = f"kubeconfig {path}" + (f" context {context}" if context else "")
    try:
        k8s_config.load_kube_config(
            config_file=path,
            context=context,
            client_configuration=configuration,
            persist_config=False,
        )
    except Exception as exc:  # ConfigException, OSError, YAML errors
        failed = [*(tried or []), f"{where}: {_short(exc)}"]
        raise ClusterError(_no_config_message(failed)) from None
    return k8s_client.ApiClient(configuration), source
