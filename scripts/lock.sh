#!/usr/bin/env bash
# Refreshes the pinned versions from pyproject.toml's ranges: requirements/dev.txt (what scripts/test.sh
# installs: every extra, Linux x86_64, Python 3.11) and deploy/constraints/edge-*.txt (what install.sh
# pins on a Pi). Run it, run scripts/test.sh, and commit the files together when the suite passes.
# edge-armv7l.txt is kept by hand: uv resolves no 32-bit ARM target.
set -euo pipefail
cd "$(dirname "$0")/.."
uv=$(command -v uv || true)
if [ -z "$uv" ]; then
  [ -x .venv/bin/uv ] || { [ -x .venv/bin/python ] || python3 -m venv .venv; .venv/bin/python -m pip install -q uv; }
  uv=.venv/bin/uv
fi
compile() { "$uv" pip compile pyproject.toml --python-version 3.11 --upgrade --quiet --annotation-style line \
  --constraint requirements/known-breaks.txt --custom-compile-command scripts/lock.sh "$@"; }
compile --extra train --extra mic --extra demo --extra dev --python-platform x86_64-manylinux_2_28 -o requirements/dev.txt
for arch in aarch64 x86_64; do
  compile --extra mic --python-platform "$arch-manylinux_2_28" -o "deploy/constraints/edge-$arch.txt"
done
echo "lock: requirements/dev.txt and deploy/constraints/edge-{aarch64,x86_64}.txt refreshed; run scripts/test.sh"
