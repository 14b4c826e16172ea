#!/usr/bin/env bash
# Install what actsmith needs on this machine: debootstrap when no registry base image can be had
# (Debian/Ubuntu, as root), a virtualenv with actsmith, and the sandbox image through actsmith itself.
# Source it to get the virtualenv on PATH; set ACTSMITH_DEV=1 to install the test tools too.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

if ! command -v debootstrap >/dev/null && ! docker image inspect python:3.12-slim >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "setup: installing debootstrap (to build the sandbox base offline if no registry answers)" >&2
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
  fi
fi

# Test tools from Debian's packages: the chat tests drive a real terminal (tmux), the batch report's
# tests render report.html in a headless browser (chromium).
if [ "${ACTSMITH_DEV:-0}" = 1 ]; then
  missing=""
  command -v tmux >/dev/null || missing="$missing tmux"
  command -v chromium >/dev/null || missing="$missing chromium"
  if [ -n "$missing" ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "setup: installing$missing (for the tests)" >&2
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null
  fi
fi

venv="${ACTSMITH_VENV:-$root/.venv}"
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
extras=""
[ "${ACTSMITH_DEV:-0}" = 1 ] && extras="[dev,ray]"
"$venv/bin/python" -m pip install -q --upgrade pip >/dev/null
"$venv/bin/python" -m pip install -q -e "$root$extras"
export PATH="$venv/bin:$PATH"

actsmith sandbox build >/dev/null
