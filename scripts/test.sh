#!/usr/bin/env bash
# Sets up what the tests need (apt: mosquitto, mosquitto-clients, portaudio19-dev, openssl, openssh-server, chromium
# and chromium-driver for the live page; a venv with serkit[train,mic,demo,dev]) and runs the linter and the whole
# test suite (arguments go to pytest: scripts/test.sh -m "not slow" for the quick tier). Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh train,mic,demo,dev mosquitto mosquitto-clients portaudio19-dev gcc openssl openssh-server openssh-client \
  chromium chromium-driver
.venv/bin/ruff check .
# The MQTT, SSH and browser tests skip without mosquitto, sshd or chromium on a developer's machine; here all were
# just installed, so they must run.
SERKIT_REQUIRE_BROKER=1 SERKIT_REQUIRE_SSHD=1 SERKIT_REQUIRE_BROWSER=1 .venv/bin/python -m pytest "$@"
