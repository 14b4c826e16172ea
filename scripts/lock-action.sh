#!/usr/bin/env bash
# Pin what action.yml installs into the job that holds the token and the model key: actsmith's
# runtime dependencies and the backend that builds actsmith (hatchling), every one with its hashes
# (pip then installs them with --require-hashes). Run after changing pyproject.toml's dependencies;
# needs pip-tools (`pip install pip-tools`) and PyPI.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
pip-compile --quiet --generate-hashes --allow-unsafe --strip-extras --no-emit-index-url --no-emit-find-links \
  --build-deps-for wheel --output-file action-requirements.txt pyproject.toml
