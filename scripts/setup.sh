#!/usr/bin/env bash
# Idempotent setup on Debian/Ubuntu: apt packages (only those missing), a virtualenv in .venv,
# and serkit installed into it in editable mode with the extras given ("edge" = none, the Pi install),
# at the versions pinned in requirements/dev.txt.
#   scripts/setup.sh [EXTRAS] [APT_PACKAGES...]     e.g. scripts/setup.sh train,mic,dev mosquitto
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-train}"
shift || true
apt_pkgs=("$@")
python="${PYTHON:-python3}"

sudo_cmd=()
[ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)

# python3 -m venv needs Debian's python3-venv when Python comes from apt.
if ! "$python" -c 'import venv, ensurepip' >/dev/null 2>&1; then
  apt_pkgs+=(python3-venv)
fi
missing=()
for p in "${apt_pkgs[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "setup: installing apt packages: ${missing[*]}"
  "${sudo_cmd[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

"$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' || {
  echo "setup: $python is $("$python" --version 2>&1); the workstation tools need Python 3.11+ (set PYTHON=...)" >&2
  exit 1
}
[ -x .venv/bin/python ] || "$python" -m venv .venv
stamp=".venv/.serkit-installed-$extras"
target=".[$extras]"
[ "$extras" = edge ] && target="."
# The versions the suite passed with (requirements/dev.txt, refreshed by scripts/lock.sh), not whatever is newest today.
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || [ requirements/dev.txt -nt "$stamp" ]; then
  echo "setup: installing serkit$([ "$extras" = edge ] || echo "[$extras]") into .venv (versions from requirements/dev.txt)"
  .venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip
  .venv/bin/python -m pip install -q -c requirements/dev.txt -e "$target"
  touch "$stamp"
fi
