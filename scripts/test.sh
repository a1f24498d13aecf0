#!/usr/bin/env bash
# Sets up what the tests need (apt: mosquitto, mosquitto-clients, portaudio19-dev, openssl, openssh-server; a venv with
# serkit[train,mic,demo,dev]) and runs the linter and the whole test suite. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh train,mic,demo,dev mosquitto mosquitto-clients portaudio19-dev gcc openssl openssh-server openssh-client
.venv/bin/ruff check .
# The MQTT and SSH tests skip without mosquitto or sshd on a developer's machine; here both were just installed, so they must run.
SERKIT_REQUIRE_BROKER=1 SERKIT_REQUIRE_SSHD=1 .venv/bin/python -m pytest "$@"
