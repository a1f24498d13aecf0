#!/usr/bin/env bash
# Installs a serkit bundle on this machine (a Raspberry Pi). Run it as root from anywhere:
#   sudo ./install.sh                full install: venv, model, config, systemd service; waits until it is up
#   sudo ./install.sh --model-only   swap in this bundle's model; rolled back if the agent does not come up
# Options:
#   --wait SECONDS   how long the agent has to come up (default 30)
#   --python PATH    interpreter for the virtualenv (default python3; 3.11 or newer)
#   --no-apt         do not apt-get the build packages PyAudio needs
#   --no-service     install files only; do not touch systemd
#   --root DIR       install under DIR instead of / (no system user, no apt): for tests and images
# Exit status: 0 up and running, 2 usage, 3 no usable Python, 4 the agent did not come up, 1 anything else.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=/dev/null
. "$here/bundle.env"

mode=full root="" service=1 apt=1 wait_s=30 python=python3 stable_s=5
while [ $# -gt 0 ]; do
  case "$1" in
    --model-only) mode=model ;;
    --wait) wait_s="$2"; shift ;;
    --python) python="$2"; shift ;;
    --no-apt) apt=0 ;;
    --no-service) service=0 ;;
    --root) root="$2"; apt=0; shift ;;
    -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
    *) echo "install.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done

prefix="$root/opt/serkit"
etc="$root/etc/serkit"
unit_dir="$root/etc/systemd/system"
models="$prefix/models"
say() { echo "serkit-install: $*"; }
fail() { echo "serkit-install: error: $1" >&2; exit "${2:-1}"; }

if [ -z "$root" ] && [ "$(id -u)" -ne 0 ]; then
  fail "run as root (sudo $0), or give --root DIR to install elsewhere"
fi
version=$("$python" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null) ||
  fail "no Python at '$python'; on Raspberry Pi OS: sudo apt install python3 python3-venv" 3
"$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' ||
  fail "Python $version is too old: serkit needs 3.11 or newer (Raspberry Pi OS bookworm or later)" 3

systemd=0
if [ "$service" = 1 ] && command -v systemctl >/dev/null 2>&1; then
  state=$(systemctl is-system-running 2>/dev/null || true)
  if [ -n "$state" ] && [ "$state" != offline ]; then systemd=1; fi
fi

# The agent counts as up when systemd has kept it active for stable_s seconds without a restart and,
# with a broker configured, its availability topic says online (checked with the agent's own config).
wait_up() {
  local n0 n state stable=0 deadline=$((SECONDS + wait_s))
  n0=$(systemctl show -p NRestarts --value serkit 2>/dev/null || echo 0)
  while :; do
    state=$(systemctl is-active serkit 2>/dev/null || true)
    n=$(systemctl show -p NRestarts --value serkit 2>/dev/null || echo 0)
    if [ "$n" != "$n0" ] || [ "$state" = failed ]; then
      say "the agent exited (systemd state: $state, restarts: $n)"; return 1
    fi
    if [ "$state" = active ]; then stable=$((stable + 1)); else stable=0; fi
    [ "$stable" -ge "$stable_s" ] && break
    if [ "$SECONDS" -ge "$deadline" ]; then say "not active after ${wait_s} s (state: $state)"; return 1; fi
    sleep 1
  done
  say "service active (${stable_s} s without a restart)"
  (
    set -a
    # shellcheck source=/dev/null
    [ -r "$etc/serkit.env" ] && . "$etc/serkit.env"
    set +a
    "$prefix/venv/bin/serkit" wait-online --config "$etc/serkit.toml" --timeout-s "$wait_s"
  ) || return 1
}

journal_tail() {
  command -v journalctl >/dev/null 2>&1 && journalctl -u serkit -n 15 --no-pager 2>/dev/null | sed 's/^/    /' >&2 || true
}

point_current_at() {  # atomic: a new symlink renamed over the old one
  ln -sfn "$1" "$models/current.new"
  mv -T "$models/current.new" "$models/current"
}

install_model() {
  local target="$models/$MODEL_ID"
  mkdir -p "$models"
  if [ ! -d "$target" ]; then
    rm -rf "$target.partial"
    mkdir -p "$target.partial"
    cp "$here/model/model.tflite" "$here/model/model.json" "$target.partial/"
    chmod 0755 "$target.partial"; chmod 0644 "$target.partial"/*
    mv "$target.partial" "$target"
  fi
}

prune_models() {  # keep the current model and the two before it
  local keep
  keep=$(readlink "$models/current" || true)
  ls -1dt "$models"/*/ 2>/dev/null | sed 's:/$::' | grep -v "/current$" | tail -n +4 | while read -r old; do
    [ "$(basename "$old")" = "$keep" ] || rm -rf "$old"
  done
}

if [ "$mode" = model ]; then
  [ -x "$prefix/venv/bin/serkit" ] && [ -L "$models/current" ] ||
    fail "no serkit installed under $prefix; deploy the agent first (serkit deploy without --model-only)"
  previous=$(readlink "$models/current")
  if [ "$previous" = "$MODEL_ID" ]; then say "model $MODEL_ID is already the current one"; exit 0; fi
  install_model
  point_current_at "$MODEL_ID"
  say "model $previous -> $MODEL_ID"
  if [ "$systemd" = 1 ]; then
    systemctl restart serkit
    if ! wait_up; then
      journal_tail
      say "rolling back to $previous"
      point_current_at "$previous"
      rm -rf "${models:?}/$MODEL_ID"
      systemctl restart serkit
      if wait_up; then
        fail "the agent did not come up with model $MODEL_ID; rolled back to $previous, which is running again" 4
      fi
      fail "the agent did not come up with model $MODEL_ID, nor after rolling back to $previous: journalctl -u serkit" 4
    fi
  fi
  prune_models
  say "model $MODEL_ID installed"
  exit 0
fi

# --- full install ---------------------------------------------------------------------------------
arch=$(uname -m)
if [ "$apt" = 1 ] && command -v apt-get >/dev/null 2>&1; then
  # python3-venv for the virtualenv; PyAudio has no Linux ARM wheels on PyPI, so pip builds it.
  pkgs=(python3-venv)
  [ -n "$EXTRAS" ] && pkgs+=(portaudio19-dev python3-dev gcc)
  missing=()
  for p in "${pkgs[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  if [ "${#missing[@]}" -gt 0 ]; then
    say "apt-get install ${missing[*]}"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
fi

user=serkit
if [ -z "$root" ] && [ "$systemd" = 1 ] && ! id -u serkit >/dev/null 2>&1; then
  getent group audio >/dev/null || groupadd --system audio
  useradd --system --home-dir /var/lib/serkit --no-create-home --shell /usr/sbin/nologin --groups audio serkit
  say "created system user serkit (group audio)"
fi
id -u serkit >/dev/null 2>&1 || user=$(id -un)

say "virtualenv $prefix/venv (Python $version, $arch)"
mkdir -p "$prefix"
[ -x "$prefix/venv/bin/python" ] || "$python" -m venv "$prefix/venv"
spec="$here/$WHEEL"
[ -n "$EXTRAS" ] && spec="$spec[$EXTRAS]"
runtime=()
case "$arch" in
  # ai-edge-litert has no 32-bit ARM wheels; tflite-runtime does, and needs numpy 1.x.
  armv7l|armv6l) runtime=(tflite-runtime "numpy<2") ;;
esac
pip=("$prefix/venv/bin/python" -m pip --disable-pip-version-check -q)
# Pinned versions for this architecture (the ones serkit was tested with), where the bundle has them.
pins=()
if [ -f "$here/constraints/edge-$arch.txt" ]; then
  pins=(-c "$here/constraints/edge-$arch.txt")
else
  say "no pinned versions for $arch in this bundle; pip picks the newest that fit"
fi
"${pip[@]}" install "${pins[@]}" "$spec" "${runtime[@]}"
# The same version number may carry new code (a developer's checkout): always replace serkit itself.
"${pip[@]}" install --force-reinstall --no-deps "$here/$WHEEL"
# -I: not the current folder first on the path, where a checkout's serkit/ would shadow the install.
backend=$("$prefix/venv/bin/python" -I -c 'from serkit.edge.runtime import interpreter_class; print(interpreter_class()[1])') ||
  fail "the TFLite runtime does not import in $prefix/venv"
say "serkit $SERKIT_VERSION installed; TFLite runtime: $backend"

install_model
mkdir -p "$etc"
[ -f "$etc/serkit.toml" ] && cp "$etc/serkit.toml" "$etc/serkit.toml.previous"
install -m 0644 "$here/serkit.toml" "$etc/serkit.toml.new"
sed -i "s:^model = \"/opt/serkit/:model = \"$prefix/:" "$etc/serkit.toml.new"
sed -i "s:\"/etc/serkit/tls/:\"$etc/tls/:" "$etc/serkit.toml.new"
mv "$etc/serkit.toml.new" "$etc/serkit.toml"
if [ -f "$here/serkit.env" ]; then
  install -m 0600 -o "$user" "$here/serkit.env" "$etc/serkit.env"
fi
if [ -d "$here/tls" ]; then
  install -d -m 0750 -o root -g "$(id -gn "$user")" "$etc/tls"
  install -m 0640 -o root -g "$(id -gn "$user")" "$here"/tls/* "$etc/tls/"
fi
point_current_at "$MODEL_ID"
prune_models

if [ "$service" = 1 ]; then
  mkdir -p "$unit_dir"
  sed -e "s:/opt/serkit:$prefix:g" -e "s:/etc/serkit:$etc:g" "$here/serkit.service" > "$unit_dir/serkit.service"
  chmod 0644 "$unit_dir/serkit.service"
fi
if [ "$systemd" = 0 ]; then
  say "installed without a service (no systemd here or --no-service); run it with:"
  say "  $prefix/venv/bin/serkit run --config $etc/serkit.toml"
  exit 0
fi
systemctl daemon-reload
systemctl enable serkit >/dev/null 2>&1
systemctl restart serkit
if ! wait_up; then
  journal_tail
  fail "serkit is installed but the agent did not come up: journalctl -u serkit -n 50" 4
fi
say "serkit $SERKIT_VERSION with model $MODEL_ID is up"
