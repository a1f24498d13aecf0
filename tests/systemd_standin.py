"""A stand-in for systemd's `systemctl` and `journalctl`, for the deploy tests.

systemd cannot run in this container (it is not PID 1), so the SSH deploy test
puts this on the remote PATH instead. It runs the *real* unit file's ExecStart
(with its EnvironmentFile) under a small supervisor that restarts it on failure
after RestartSec and counts NRestarts, which is what install.sh's checks read:
    systemctl is-system-running | daemon-reload | enable UNIT | restart UNIT | stop UNIT
    systemctl is-active UNIT | systemctl show -p NRestarts --value UNIT
    journalctl -u UNIT -n N --no-pager
It ignores User= (the test runs as one user) and every hardening setting.
State lives in $SERKIT_STANDIN_DIR; unit files are read from $SERKIT_STANDIN_UNITS.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

STATE = Path(os.environ.get("SERKIT_STANDIN_DIR", "/tmp/serkit-standin"))
UNITS = Path(os.environ.get("SERKIT_STANDIN_UNITS", "/etc/systemd/system"))


def _unit_name(name: str) -> str:
    return name if name.endswith(".service") else f"{name}.service"


def _state_file(unit: str) -> Path:
    return STATE / f"{_unit_name(unit)}.json"


def _read(unit: str) -> dict:
    try:
        return json.loads(_state_file(unit).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {"state": "inactive", "restarts": 0, "supervisor": None}


def _write(unit: str, **changes: object) -> None:
    data = {**_read(unit), **changes}
    tmp = _state_file(unit).with_suffix(".tmp")
    tmp.write_text(json.dumps(data))
    tmp.replace(_state_file(unit))


def _parse_unit(unit: str) -> dict[str, str]:
    values = {}
    for line in (UNITS / _unit_name(unit)).read_text().splitlines():
        if "=" in line and not line.lstrip().startswith(("#", "[")):
            key, value = line.split("=", 1)
            values[key.strip()] = value.strip()
    return values


def _environment(unit: dict[str, str]) -> dict[str, str]:
    env = dict(os.environ)
    path = unit.get("EnvironmentFile", "")
    optional = path.startswith("-")
    path = path.lstrip("-")
    if path:
        try:
            for line in Path(path).read_text().splitlines():
                if "=" in line and not line.startswith("#"):
                    key, value = line.split("=", 1)
                    env[key.strip()] = value.strip().strip("'\"")
        except FileNotFoundError:
            if not optional:
                raise
    return env


def supervise(unit_name: str) -> None:
    unit = _parse_unit(unit_name)
    log = open(STATE / f"{_unit_name(unit_name)}.log", "ab", buffering=0)
    child: subprocess.Popen | None = None
    stopping = False

    def on_term(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True
        if child and child.poll() is None:
            child.terminate()

    signal.signal(signal.SIGTERM, on_term)
    _write(unit_name, supervisor=os.getpid())
    while True:
        child = subprocess.Popen(
            shlex.split(unit["ExecStart"]), stdout=log, stderr=log, env=_environment(unit), stdin=subprocess.DEVNULL
        )
        _write(unit_name, state="active", pid=child.pid)
        rc = child.wait()
        log.write(f"standin: process exited with status {rc}\n".encode())
        if stopping or rc == 0 or unit.get("Restart") != "on-failure":
            _write(unit_name, state="inactive" if stopping or rc == 0 else "failed", pid=None, supervisor=None)
            return
        _write(unit_name, state="activating", pid=None, restarts=_read(unit_name)["restarts"] + 1)
        time.sleep(float(unit.get("RestartSec", "1")))
        if stopping:
            _write(unit_name, state="inactive", supervisor=None)
            return


def stop(unit: str) -> None:
    pid = _read(unit).get("supervisor")
    if pid:
        try:
            os.kill(pid, signal.SIGTERM)
            for _ in range(200):
                os.kill(pid, 0)
                time.sleep(0.1)
        except ProcessLookupError:
            pass
    _write(unit, state="inactive", supervisor=None, pid=None)


def start(unit: str) -> None:
    log = open(STATE / f"{_unit_name(unit)}.log", "ab")
    _write(unit, state="activating", supervisor=None)
    subprocess.Popen(
        [sys.executable, __file__, "supervise", unit],
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=log,
        start_new_session=True,  # outlives the ssh session, like a service
    )
    for _ in range(100):  # systemctl returns once the service is started
        if _read(unit)["state"] != "activating":
            break
        time.sleep(0.05)


def systemctl(args: list[str]) -> int:
    args = [a for a in args if a not in ("--now", "--quiet", "-q", "--no-pager")]
    cmd, rest = args[0], args[1:]
    if cmd == "is-system-running":
        print("running")
    elif cmd in ("daemon-reload", "enable"):
        pass
    elif cmd == "restart":
        stop(rest[0])
        start(rest[0])
    elif cmd == "stop":
        stop(rest[0])
    elif cmd == "is-active":
        state = _read(rest[0])["state"]
        print(state)
        return 0 if state == "active" else 3
    elif cmd == "show" and rest[:2] == ["-p", "NRestarts"]:
        print(_read(rest[-1])["restarts"])
    else:
        print(f"systemd stand-in: unsupported: systemctl {' '.join(args)}", file=sys.stderr)
        return 1
    return 0


def journalctl(args: list[str]) -> int:
    unit = args[args.index("-u") + 1]
    lines = int(args[args.index("-n") + 1]) if "-n" in args else 50
    log = STATE / f"{_unit_name(unit)}.log"
    if log.exists():
        print("\n".join(log.read_text(errors="replace").splitlines()[-lines:]))
    return 0


def install(bin_dir: Path) -> None:
    """Write `systemctl` and `journalctl` wrappers into bin_dir."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    for name in ("systemctl", "journalctl"):
        exe = bin_dir / name
        exe.write_text(f'#!/bin/sh\nexec {shlex.quote(sys.executable)} {shlex.quote(__file__)} {name} "$@"\n')
        exe.chmod(0o755)


if __name__ == "__main__":
    STATE.mkdir(parents=True, exist_ok=True)
    tool, argv = sys.argv[1], sys.argv[2:]
    if tool == "supervise":
        supervise(argv[0])
    else:
        sys.exit(systemctl(argv) if tool == "systemctl" else journalctl(argv))
