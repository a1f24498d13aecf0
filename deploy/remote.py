"""Talking to the Pi with the system's ssh: a preflight probe, the bundle as a tar stream, the install run.

Nothing here changes the Pi until `send_bundle`; every check that can refuse a
deploy (host unreachable, no Python 3.11+, no root) runs before it.
"""

from __future__ import annotations

import io
import shlex
import subprocess
import sys
import tarfile
from dataclasses import dataclass
from pathlib import Path

from serkit.edge.errors import SerkitError

MIN_PYTHON = (3, 11)
INSTALL_ERROR = "serkit-install: error: "  # install.sh's fail() prefix


@dataclass(frozen=True)
class SshTarget:
    host: str  # USER@HOST or HOST
    port: int | None = None
    identity: str | None = None
    options: tuple[str, ...] = ()

    def command(self, remote: str) -> list[str]:
        cmd = ["ssh"]
        for opt in self.options:  # first: ssh keeps the first value it reads for an option
            cmd += ["-o", opt]
        cmd += ["-o", "BatchMode=yes", "-o", "ConnectTimeout=10", "-o", "StrictHostKeyChecking=accept-new"]
        if self.port:
            cmd += ["-p", str(self.port)]
        if self.identity:
            cmd += ["-i", self.identity]
        return [*cmd, "--", self.host, remote]


def probe_script(python: str) -> str:
    """Shell run on the Pi that prints key=value facts; reads only."""
    py = shlex.quote(python)
    return (
        "echo arch=$(uname -m); echo uid=$(id -u); "
        f"echo python=$({py} -c 'import sys; print(\"%d.%d\" % sys.version_info[:2])' 2>/dev/null || echo none); "
        "if sudo -n true 2>/dev/null; then echo sudo=yes; else echo sudo=no; fi; "
        "echo systemd=$(systemctl is-system-running 2>/dev/null || true); "
        "if [ -L /opt/serkit/models/current ]; then echo installed=$(readlink /opt/serkit/models/current); "
        "else echo installed=; fi"
    )


@dataclass(frozen=True)
class RemoteFacts:
    arch: str
    root: bool
    sudo: bool
    python: tuple[int, int] | None
    systemd: str
    installed_model: str

    @property
    def has_systemd(self) -> bool:
        return self.systemd not in ("", "offline")

    @property
    def runtime(self) -> str:
        return "tflite-runtime with numpy<2" if self.arch in ("armv7l", "armv6l") else "ai-edge-litert"


def parse_probe(text: str) -> RemoteFacts:
    facts = dict(line.split("=", 1) for line in text.splitlines() if "=" in line)
    version = facts.get("python", "none")
    try:
        python = tuple(int(x) for x in version.split(".")[:2])
    except ValueError:
        python = None
    return RemoteFacts(
        arch=facts.get("arch", "?"),
        root=facts.get("uid") == "0",
        sudo=facts.get("sudo") == "yes",
        python=python if python and len(python) == 2 else None,  # type: ignore[arg-type]
        systemd=facts.get("systemd", ""),
        installed_model=facts.get("installed", ""),
    )


def check_facts(facts: RemoteFacts, host: str, python: str, model_only: bool, root_dir: str) -> None:
    """Refuse a deploy the Pi cannot take, before anything is copied."""
    if facts.python is None:
        raise SerkitError(
            f"{host}: no Python at '{python}'; install it (sudo apt install python3 python3-venv) or give --python"
        )
    if facts.python < MIN_PYTHON:
        raise SerkitError(
            f"{host}: Python {facts.python[0]}.{facts.python[1]} is too old, serkit needs 3.11 or newer "
            "(Raspberry Pi OS bookworm or later, or --python PATH to a newer one); nothing was changed"
        )
    if not facts.root and not facts.sudo and not root_dir:
        raise SerkitError(
            f"{host}: this user is not root and has no passwordless sudo; deploy as a user with "
            "'sudo' rights (Raspberry Pi OS's first user has them) or as root"
        )
    if model_only and not root_dir and not facts.installed_model:
        raise SerkitError(f"{host}: serkit is not installed there; deploy the agent first (without --model-only)")


def _ssh_error(target: SshTarget, stderr: str) -> SerkitError:
    lines = [ln for ln in stderr.strip().splitlines() if ln.strip()]
    why = lines[-1] if lines else "ssh failed"
    return SerkitError(
        f"cannot reach {target.host} over ssh ({why}); check the address and that "
        f"'ssh {target.host}' works with your key and no password; nothing was changed"
    )


def probe(target: SshTarget, python: str) -> RemoteFacts:
    try:
        done = subprocess.run(target.command(probe_script(python)), capture_output=True, text=True, timeout=60)
    except FileNotFoundError:
        raise SerkitError("no 'ssh' command on this machine; install OpenSSH (apt install openssh-client)") from None
    except subprocess.TimeoutExpired:
        raise SerkitError(f"{target.host}: no answer over ssh within 60 s; nothing was changed") from None
    if done.returncode == 255 or "arch=" not in done.stdout:
        raise _ssh_error(target, done.stderr)
    return parse_probe(done.stdout)


def tar_bytes(folder: Path) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        tar.add(folder, arcname=".")
    return buf.getvalue()


def send_bundle(target: SshTarget, folder: Path) -> str:
    """Unpack the bundle into a fresh temporary folder on the Pi; returns that folder."""
    remote = 'd=$(mktemp -d /tmp/serkit-deploy.XXXXXX) && tar -xzf - -C "$d" && echo "$d"'
    done = subprocess.run(target.command(remote), input=tar_bytes(folder), capture_output=True, timeout=600)
    if done.returncode != 0:
        if done.returncode == 255:
            raise _ssh_error(target, done.stderr.decode(errors="replace"))
        raise SerkitError(f"{target.host}: copying the bundle failed: {done.stderr.decode(errors='replace').strip()}")
    return done.stdout.decode().strip().splitlines()[-1]


def install_command(remote_dir: str, facts: RemoteFacts, args: list[str]) -> str:
    sudo = "" if facts.root or "--root" in args else "sudo -n "
    d = shlex.quote(remote_dir)
    return f"{sudo}bash {d}/install.sh {shlex.join(args)}; rc=$?; rm -rf {d}; exit $rc"


def run_install(target: SshTarget, remote_dir: str, facts: RemoteFacts, args: list[str]) -> tuple[int, str]:
    """Run install.sh on the Pi, its output streamed to ours; returns its exit status and its error line."""
    proc = subprocess.Popen(
        target.command(install_command(remote_dir, facts, args)),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert proc.stdout is not None
    error = ""
    for line in proc.stdout:
        sys.stderr.write(f"  {target.host}: {line}")
        if line.startswith(INSTALL_ERROR):
            error = line[len(INSTALL_ERROR) :].strip()
    return proc.wait(), error
