"""The v2 cluster: its target resource (local servers or Kubernetes), its objects, cutover files.

``v2.py`` (local servers, on the shared ``local/``) and ``k8s_target.py`` (Kubernetes) are the two
v2 targets; ``k8s/`` renders, validates and applies Kubernetes objects; ``envswitch.py`` writes
the cutover files ``.env.v1`` / ``.env.v2``.
"""
