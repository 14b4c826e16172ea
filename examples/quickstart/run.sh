#!/usr/bin/env bash
# The quickstart: from a clean clone to a finished example run, with no API key.
# Installs actsmith into .venv (unless it is already on PATH), builds the sandbox image on first use,
# then lets a scripted (replay) model fix a bug in a copy of examples/quickstart/repo.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
source "$root/scripts/setup.sh"

work=$(mktemp -d -t actsmith-quickstart-XXXXXX)
cp -R "$here/repo/." "$work"
git -C "$work" init -q
git -C "$work" add -A
git -C "$work" -c user.name=quickstart -c user.email=quickstart@example.invalid commit -qm "quickstart repo"

set +e
actsmith run --repo "$work" --model "replay:$here/replay.yaml" "Make the failing test in calc.py pass"
status=$?
set -e
echo
echo "The repository the agent worked on: $work  (git -C $work diff shows the change)"
exit $status
