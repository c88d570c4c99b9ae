# The project image: the cartrita CLI, the Dagster code location and the migration runner
# (k8s/job-db-migrate.yaml runs `cartrita db migrate` from it).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    CARTRITA_STATE_DIR=/var/lib/cartrita

WORKDIR /opt/cartrita
COPY pyproject.toml setup.py README.md workspace.yaml ./
COPY cartrita_assets ./cartrita_assets
COPY sql ./sql
COPY k8s ./k8s
RUN pip install . \
    && groupadd --system --gid 10001 cartrita \
    && useradd --system --uid 10001 --gid cartrita --home-dir /var/lib/cartrita --create-home cartrita

USER 10001:10001
EXPOSE 4000
# The Dagster code server for the Helm chart's user code deployment; the Job overrides the command.
CMD ["dagster", "code-server", "start", "-h", "0.0.0.0", "-p", "4000", "-m", "cartrita_assets.definitions"]
