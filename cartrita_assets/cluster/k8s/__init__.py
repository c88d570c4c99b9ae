"""Kubernetes: manifests, Secrets, the cluster seam and waiting for readiness."""
