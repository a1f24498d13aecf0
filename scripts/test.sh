#!/usr/bin/env bash
# Sets up what the tests need (apt: mosquitto, mosquitto-clients, portaudio19-dev; a venv with
# serkit[train,mic,dev]) and runs the linter and the whole test suite. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh train,mic,dev mosquitto mosquitto-clients portaudio19-dev gcc
.venv/bin/ruff check .
.venv/bin/python -m pytest "$@"
