#!/usr/bin/env bash
# Set up, then run forward_migration_job on the embedded default (demo v1 unless ./.env exists).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
exec .venv/bin/cartrita forward "$@"
