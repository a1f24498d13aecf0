#!/usr/bin/env bash
# The main job on a fresh machine, with the edge install only (no TensorFlow): the shipped full-int8
# model (ai-edge-litert) listens to the bundled sample clips through the real agent, which publishes
# to an MQTT broker it starts in-process; every message is printed as a subscriber sees it.
#   scripts/demo.sh [--broker mqtt://HOST:PORT]     (to watch it from your own Home Assistant broker)
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh demo
.venv/bin/serkit demo "$@"
