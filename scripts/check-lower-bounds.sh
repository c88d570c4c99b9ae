#!/usr/bin/env bash
# Prove the lower bounds in pyproject.toml: install every dependency (the dev extras too) at the
# lowest version its requirement allows into a scratch virtualenv, then `pip check` and the unit
# tests there. A bound that fails is raised in pyproject.toml. The project's .venv is untouched.
#
#   bash scripts/check-lower-bounds.sh [extra pytest arguments]
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-$(command -v python3.11 || command -v python3)}"
scratch="$(mktemp -d "${TMPDIR:-/tmp}/cartrita-lower-bounds.XXXXXX")"
trap 'rm -rf "$scratch"' EXIT
# name[extras]==lowest for each requirement; one without a lower bound is an error
pins="$("$PY" - <<'PYEOF'
import re
import sys
import tomllib

project = tomllib.load(open("pyproject.toml", "rb"))["project"]
requirements = list(project["dependencies"])
for extra in project.get("optional-dependencies", {}).values():
    requirements += extra
missing = []
for requirement in requirements:
    name, spec = re.fullmatch(r"\s*([A-Za-z0-9_.\-]+(?:\[[^\]]*\])?)\s*(.*)", requirement).groups()
    low = re.search(r"(?:>=|~=|==)\s*([0-9][^,;\s]*)", spec)
    if low is None:
        missing.append(requirement)
    else:
        print(f"{name}=={low.group(1)}")
if missing:
    sys.exit(f"pyproject.toml: no lower bound for {', '.join(missing)}: give each a >= bound.")
PYEOF
)"
echo "Lower bounds:" $pins
"$PY" -m venv "$scratch/venv"
"$scratch/venv/bin/python" -m pip install --quiet --upgrade pip
# shellcheck disable=SC2086  # one argument per pin
"$scratch/venv/bin/python" -m pip install --quiet $pins
"$scratch/venv/bin/python" -m pip install --quiet --no-deps -e .
"$scratch/venv/bin/python" -m pip check
"$scratch/venv/bin/python" -m pip list --format=freeze > "$scratch/installed.txt"
echo "pip check passed; running the unit tests with the lower bounds"
"$scratch/venv/bin/python" -m pytest -p no:cacheprovider -q tests/unit "$@"
