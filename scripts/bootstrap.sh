#!/usr/bin/env bash
# Create .venv (Python >= 3.11) and install the project with its dev tools. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-$(command -v python3.11 || command -v python3)}"
"$PY" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11 or newer is required")'
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
stamp=.venv/.cartrita-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  .venv/bin/python -m pip install --quiet --upgrade pip
  .venv/bin/python -m pip install --quiet -e ".[dev]"
  .venv/bin/python -m pip check
  touch "$stamp"
fi
# The demo v1 runs a real Redis 7 (what Cartrita's Compose file runs); Debian ships it in
# redis-tools (no service is started). Without root, or when apt cannot reach its mirror, the demo
# falls back to the bundled valkey-server and says so: setting up never fails on this step.
if ! command -v redis-server >/dev/null && [ ! -x /usr/bin/redis-check-rdb ] \
   && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  if ! { apt-get update -qq && apt-get install -y -qq --no-install-recommends redis-tools; } \
       >/dev/null 2>&1; then
    echo "warning: could not install Debian's redis-tools (Redis 7 for the demo v1);" \
         "the demo v1 will run the bundled valkey-server instead" >&2
  fi
fi
# The embedded default's connection pooler is Debian's PgBouncer (1.18 on bookworm; no PyPI
# package ships one). Without root or apt, v2_pooler says how to install it and its tests skip.
# The package's own service is not needed: the project starts its own PgBouncer.
if ! command -v pgbouncer >/dev/null && [ ! -x /usr/sbin/pgbouncer ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    if ! { apt-get update -qq && apt-get install -y -qq --no-install-recommends pgbouncer; } \
         >/dev/null 2>&1; then
      echo "warning: could not install Debian's pgbouncer; v2_pooler and its tests need it" >&2
    fi
  else
    echo "warning: pgbouncer is not installed (needs root and apt: apt-get install pgbouncer);" \
         "v2_pooler and its tests need it" >&2
  fi
fi
