"""`serkit deploy`: one command from a model on the workstation to a verified service on the Pi."""

from __future__ import annotations

import argparse
import shlex
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from serkit.edge.argtypes import port, positive_float
from serkit.edge.errors import SerkitError

if TYPE_CHECKING:
    from serkit.deploy.bundle import MergedConfig


def _log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _install_args(args: argparse.Namespace) -> list[str]:
    out = ["--model-only"] if args.model_only else []
    out += ["--wait", f"{args.wait_s:g}", "--python", args.python]
    if args.remote_root:
        out += ["--root", args.remote_root]
    return out


def _check_model(path: Path, load: bool) -> None:
    from serkit.edge.agent import load_model
    from serkit.edge.spec import spec_path_for

    if load:
        load_model(str(path), threads=1)  # the same refusals the agent would give on the Pi, here and now
    elif not path.is_file() or not Path(spec_path_for(path)).is_file():
        raise SerkitError(f"--model {path}: needs the .tflite file and its .json spec beside it")


def cmd_deploy(args: argparse.Namespace) -> int:
    from serkit.deploy.bundle import merge_config, model_id, write_bundle
    from serkit.edge.agent import default_model_path

    if not args.host and not args.bundle:
        raise SerkitError("give --host USER@HOST to deploy over SSH, or --bundle DIR to write the bundle only")
    if not args.model_only and not args.board:
        from serkit.firmware_configs import board_names

        raise SerkitError(f"give --board (one of: {', '.join(board_names())}); only --model-only needs none")
    merged = None if args.model_only else merge_config(args.board, args.config)
    model = Path(args.model or default_model_path())
    _check_model(model, load=not args.force)
    mid = model_id(model)
    what = f"model {mid}" if args.model_only else f"serkit + model {mid} (board {args.board})"
    if args.bundle:
        b = write_bundle(Path(args.bundle), model, merged, args.board)
        _log(f"bundle for {what} written to {b.path} ({len(b.files)} files)")
        _log(
            f"on the Pi: copy the folder over, then  sudo bash {b.path.name}/install.sh{' --model-only' * args.model_only}"
        )
        return 0
    if args.dry_run:
        _print_plan(args, what)
        return 0
    _deploy_over_ssh(args, model, merged, what)
    return 0


def _target(args: argparse.Namespace):  # noqa: ANN202
    from serkit.deploy.remote import SshTarget

    return SshTarget(args.host, args.port, args.identity, tuple(args.ssh_option or ()))


def _print_plan(args: argparse.Namespace, what: str) -> None:
    """--dry-run: every step of the deploy as it would run, contacting nothing."""
    from serkit.deploy.remote import install_command, probe_script

    q, target = shlex.join, _target(args)
    print(f"dry run: deploy {what} to {args.host}; nothing is built, copied or changed")
    contents = (
        "model.tflite + model.json, install.sh"
        if args.model_only
        else "serkit wheel (no training dependencies), model.tflite + model.json, "
        f"serkit.toml (board {args.board}{' + ' + args.config if args.config else ''}), serkit.service, install.sh"
    )
    install = install_command("/tmp/serkit-deploy.XXXXXX", _facts_for_dry_run(), _install_args(args))
    print(f"1. build the bundle: {contents}")
    print(f"2. check the Pi (read only): {q(target.command(probe_script(args.python)))}")
    print(f"3. copy the bundle: tar -cz BUNDLE | {q(target.command('d=$(mktemp -d ...) && tar -xzf - -C $d'))}")
    print(f"4. install: {q(target.command(install))}")
    if args.model_only:
        print(
            "   install.sh --model-only: copy the model beside the old one, swap the 'current' link atomically, "
            "restart serkit; roll back to the old model if it does not come up"
        )
    else:
        print(
            "   install.sh: apt python3-venv (+ portaudio19-dev for a microphone), user serkit in 'audio', "
            "virtualenv /opt/serkit/venv (ai-edge-litert on 64-bit, tflite-runtime + numpy<2 on armv7l), "
            "model under /opt/serkit/models, /etc/serkit/serkit.toml, the unit, enable + restart"
        )
    print(
        f"5. verify: systemctl is-active serkit for 5 s without a restart, then serkit wait-online "
        f"(availability topic on the configured broker), within {args.wait_s:g} s"
    )


def _deploy_over_ssh(args: argparse.Namespace, model: Path, merged: "MergedConfig | None", what: str) -> None:
    """Probe the Pi, copy the bundle, run install.sh; a failure at any step is one line."""
    from serkit.deploy.bundle import write_bundle
    from serkit.deploy.remote import check_facts, probe, run_install, send_bundle

    target = _target(args)
    _log(f"[1/4] checking {args.host}")
    facts = probe(target, args.python)
    check_facts(facts, args.host, args.python, args.model_only, args.remote_root)
    py = facts.python or (0, 0)
    _log(
        f"      {facts.arch}, Python {py[0]}.{py[1]}, runtime {facts.runtime}, "
        f"systemd {facts.systemd if facts.has_systemd else 'not running'}, installed model: {facts.installed_model or 'none'}"
    )
    with tempfile.TemporaryDirectory(prefix="serkit-bundle-") as tmp:
        _log(f"[2/4] building the bundle for {what}")
        b = write_bundle(Path(tmp) / "bundle", model, merged, args.board)
        _log(f"[3/4] copying {len(b.files)} files to {args.host}")
        remote_dir = send_bundle(target, b.path)
    _log(f"[4/4] installing on {args.host}")
    rc, error = run_install(target, remote_dir, facts, _install_args(args))
    if rc == 255:
        raise SerkitError(f"lost the ssh connection to {args.host} during the install; run the deploy again")
    if rc != 0:
        raise SerkitError(f"deploy to {args.host} failed: {error or f'install.sh exited with status {rc}'}")
    print(
        f"deployed {what} to {args.host}: service active" + ("" if facts.has_systemd else " (no systemd: not started)")
    )


def _facts_for_dry_run():  # noqa: ANN202
    # The dry run does not contact the Pi; show the command as it runs for a sudo user.
    from serkit.deploy.remote import RemoteFacts

    return RemoteFacts("?", False, True, None, "", "")


def register_deploy(sub: argparse._SubParsersAction) -> None:
    from serkit.firmware_configs import board_names

    p = sub.add_parser(
        "deploy",
        help="install the agent and a model on a Raspberry Pi over SSH, as a service, and check it came up",
        description=(
            "Build a bundle (serkit wheel without training dependencies, the int8 model and its spec, the board "
            "config merged with yours, the systemd unit, install.sh), copy it over ssh, install it as the serkit "
            "service and wait until it is active and online on the broker. The Pi needs ssh access with a key, "
            "passwordless sudo (or root), Python 3.11+ and internet access for pip."
        ),
    )
    p.add_argument("--host", help="USER@HOST of the Pi (ssh must work there without a password)")
    p.add_argument("--board", help=f"board config to start from: {', '.join(board_names())}")
    p.add_argument("--model", help="int8 .tflite with its .json spec beside it (default: the shipped model)")
    p.add_argument("--config", help="your TOML keys (broker, device_id, source, password...) over the board's")
    p.add_argument("--model-only", action="store_true", help="flash a new model alone; rolled back if it fails")
    p.add_argument(
        "--force",
        action="store_true",
        help="skip loading the model here first (for ops only the Pi's runtime has); a failure rolls back there",
    )
    p.add_argument("--dry-run", action="store_true", help="print every step without doing it")
    p.add_argument("--bundle", metavar="DIR", help="only write the bundle to DIR (to copy by hand, e.g. an SD card)")
    p.add_argument("--port", type=port, help="ssh port (default: ssh's own, 22 unless ~/.ssh/config says otherwise)")
    p.add_argument("--identity", metavar="KEY", help="ssh private key")
    p.add_argument("--ssh-option", action="append", metavar="OPT", help="extra ssh -o option (repeatable)")
    p.add_argument("--python", default="python3", help="Python on the Pi for the virtualenv (default python3)")
    p.add_argument("--wait-s", type=positive_float, default=30.0, help="seconds the agent has to come up (default 30)")
    p.add_argument("--wait", type=positive_float, dest="wait_s", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    p.add_argument("--remote-root", default="", help=argparse.SUPPRESS)  # install under a folder: tests, images
    p.set_defaults(func=cmd_deploy)
