#!/usr/bin/env bash
# The one command that runs every check: lint, format, types, and the whole test suite (Docker tests included).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
export ACTSMITH_DEV=1
source "$root/scripts/setup.sh"
cd "$root"
ruff check .
ruff format --check .
mypy
python -m pytest "$@"
