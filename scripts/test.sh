#!/usr/bin/env bash
# Set up, lint, and run the whole test suite against real servers the suite starts itself.
#
# pytest-xdist runs the tests: one worker per core (at least 2: while one worker waits on its
# servers the other computes), each with servers of its own; tests that share a module's fixture
# or the control plane stay on one worker (--dist loadgroup, tests/support/groups.py).
# CARTRITA_TEST_WORKERS sets the number of workers (0: serially, in this process); `-p no:xdist`
# among the arguments runs serially too.
set -euo pipefail
cd "$(dirname "$0")/.."
parallel=(-n "${CARTRITA_TEST_WORKERS:-$(nproc)}" --dist loadgroup)
if [ -n "${CARTRITA_TEST_WORKERS:-}" ]; then
  if ! [[ "$CARTRITA_TEST_WORKERS" =~ ^[0-9]+$ ]]; then
    echo "CARTRITA_TEST_WORKERS=$CARTRITA_TEST_WORKERS is not a whole number: set it to the" \
         "number of test workers (0 runs the tests serially), or unset it for one per core." >&2
    exit 2
  fi
elif [ "$(nproc)" -lt 2 ]; then
  parallel=(-n 2 --dist loadgroup)
fi
for arg in "$@"; do
  case "$arg" in *no:xdist*) parallel=() ;; esac
done
bash scripts/bootstrap.sh
.venv/bin/ruff check .
.venv/bin/ruff format --check .
VIRTUAL_ENV="$PWD/.venv" .venv/bin/dg check defs
exec .venv/bin/python -m pytest "${parallel[@]}" "$@"
