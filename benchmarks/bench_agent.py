"""The edge agent end to end on a long recording, at --pace fast.

Runs the real `serkit run` in a child process on several minutes of speech (the bundled clips, tiled
with pauses), printing to stdout (once plain, once serving the live page with one client reading its
event stream) and publishing to a real Mosquitto broker when one is installed, and reports: real-time factor (processing seconds per audio second), per-stage ms per
window from the agent's own stats, peak RSS of the child. The reference, measured in the same run,
is offline batch classification of the same audio (whole-file MFCC, then every window).

Goals on a 2-core x86_64 VM with ai-edge-litert: RTF <= 0.02, peak RSS <= 120 MB.

    .venv/bin/python benchmarks/bench_agent.py [--minutes 5]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]

from serkit.edge.agent import load_model  # noqa: E402
from serkit.edge.audio import read_wav, write_wav  # noqa: E402
from serkit.edge.features import mfcc  # noqa: E402
from serkit.edge.windows import clip_windows  # noqa: E402


def long_recording(minutes: float, rate: int) -> np.ndarray:
    clips = [read_wav(p, rate)[0] for p in sorted((ROOT / "edge" / "samples").glob("*.wav"))]
    pause = np.zeros(rate, np.float32)
    parts, n, i = [], 0, 0
    while n < minutes * 60 * rate:
        parts += [clips[i % len(clips)], pause]
        n += len(clips[i % len(clips)]) + len(pause)
        i += 1
    return np.concatenate(parts)


def run_agent(wav: Path, broker: str, http_port: int | None = None) -> dict:
    """One agent run at --pace fast; with http_port, the live page is served and one browser-like client
    reads its event stream from start to end."""
    args = ["run", "--source", f"file:{wav}", "--pace", "fast", "--broker", broker]
    args += ["--stats-interval-s", "86400", "--device-id", "bench"]
    if http_port:
        args += ["--http", str(http_port)]
    client = EventClient(http_port) if http_port else None
    wall, peak_mb, out = measure(args)
    stats = {"wall_s": wall, "peak_rss_mb": peak_mb}
    if client:
        client.join(10)
        stats["client_windows"] = client.windows
    lines = [json.loads(x) for x in out.splitlines() if x.startswith("{")]
    final = [x for x in lines if x.get("topic") == "stats"]
    if final:
        stats.update({k: v for k, v in final[-1].items() if k != "peak_rss_mb"})
    return stats


def measure(serkit_args: list[str]) -> tuple[float, float, str]:
    """(wall s, peak RSS MB, stdout) of the installed CLI run as `python -m serkit ARGS`."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-m", "serkit", *serkit_args], stdout=out, stderr=err, cwd=ROOT)
        # VmHWM of the child's own address space (ru_maxrss would include the forked parent's pages).
        peak_kb = 0
        status = Path(f"/proc/{proc.pid}/status")
        while proc.poll() is None:
            try:
                if b"serkit" in Path(f"/proc/{proc.pid}/cmdline").read_bytes():  # else not exec'd yet
                    hwm = [ln for ln in status.read_text().splitlines() if ln.startswith("VmHWM:")]
                    peak_kb = max(peak_kb, int(hwm[0].split()[1])) if hwm else peak_kb
            except (OSError, ValueError):
                pass
            time.sleep(0.005)
        wall = time.perf_counter() - t0
        err.seek(0)
        if proc.returncode != 0:
            raise SystemExit(f"serkit {serkit_args[0]} failed: {err.read().decode()[-2000:]}")
        out.seek(0)
        return wall, peak_kb / 1024, out.read().decode()


def long_file_memory(minutes: float, rate: int, tmp: Path) -> None:
    """Peak RSS of `serkit run --pace fast` and `serkit predict` on one long WAV: the same for any length."""
    wav = tmp / "long.wav"
    write_wav(wav, long_recording(minutes, rate), rate)
    for name, args in (
        (
            "serkit run --pace fast --broker none",
            ["run", "--source", f"file:{wav}", "--pace", "fast", "--broker", "none"],
        ),
        ("serkit predict", ["predict", str(wav)]),
    ):
        wall, peak, _ = measure(args)
        print(f"{minutes:.0f}-minute WAV ({wav.stat().st_size / 1e6:.0f} MB), {name}: peak RSS {peak:.0f} MB "
              f"(goal <= 80), RTF {wall / (minutes * 60):.4f}")  # fmt: skip


class EventClient(threading.Thread):
    """Connects to /events as soon as the agent listens, and counts the window events it reads."""

    def __init__(self, port: int) -> None:
        super().__init__(daemon=True)
        self.port, self.windows = port, 0
        self.start()

    def run(self) -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
                conn.request("GET", "/events")
                break
            except OSError:
                time.sleep(0.002)
        else:
            return
        try:
            for line in conn.getresponse():
                self.windows += line == b"event: window\n"
        except (OSError, http.client.HTTPException):
            pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=5.0)
    ap.add_argument("--long-minutes", type=float, default=120.0, help="the long WAV for the memory runs (0 = skip)")
    a = ap.parse_args()
    model = load_model("", 1)
    spec = model.spec
    rate = spec.features.sample_rate
    audio = long_recording(a.minutes, rate)
    seconds = len(audio) / rate
    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "long.wav"
        write_wav(wav, audio, rate)
        audio = read_wav(wav, rate)[0]

        t0 = time.perf_counter()
        windows = clip_windows(spec.normalise(mfcc(audio, spec.features)), spec.frames_per_window, spec.hop_frames)
        model.predict(windows)
        offline_s = time.perf_counter() - t0

        stdout_run = run_agent(wav, "none")
        http_run = run_agent(wav, "none", http_port=free_port())
        broker_run = None
        exe = shutil.which("mosquitto") or ("/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None)
        if exe:
            port = free_port()
            conf = Path(tmp) / "m.conf"
            conf.write_text(
                f"listener {port} 127.0.0.1\nallow_anonymous true\n" + ("user root\n" if os.geteuid() == 0 else "")
            )
            broker = subprocess.Popen([exe, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(0.5)
            try:
                broker_run = run_agent(wav, f"mqtt://127.0.0.1:{port}")
            finally:
                broker.terminate()
                broker.wait()

        if a.long_minutes:
            long_file_memory(a.long_minutes, rate, Path(tmp))

    n = len(windows)
    print(f"audio: {seconds:.0f} s of speech with pauses, {n} windows of {spec.window_s:.2f} s every {spec.hop_s} s")
    print(f"model: {model.path.name} ({model.backend}, 1 thread)")
    print(
        f"reference, offline batch (whole-file MFCC + every window): {offline_s:.2f} s, RTF {offline_s / seconds:.4f}"
    )
    runs = (("agent -> stdout", stdout_run), ("agent -> stdout, --http + 1 client", http_run))
    for name, r in (*runs, ("agent -> mosquitto", broker_run)):
        if r is None:
            print(f"{name}: skipped (mosquitto not installed)")
            continue
        rtf = r["wall_s"] / seconds
        proc_rtf = r.get("uptime_s", r["wall_s"]) / seconds
        stages = (
            f"features {r['feature_ms']:.2f} ms/window, inference {r['inference_ms']:.2f} ms/speech window, "
            f"{r['speech_windows']}/{r['windows']} windows passed the gate; "
            if "feature_ms" in r
            else "(stage timings went to the stats topic); "
        )
        print(
            f"{name}: wall {r['wall_s']:.2f} s incl. start-up -> RTF {rtf:.4f} (goal <= 0.02); "
            f"streaming loop alone RTF {proc_rtf:.4f}; {r['wall_s'] / offline_s:.2f}x the offline reference; "
            f"{stages}peak RSS {r['peak_rss_mb']:.0f} MB (goal <= 120)"
        )
    loop = http_run.get("uptime_s", 0) / max(stdout_run.get("uptime_s", 0), 1e-9)
    print(
        f"live page: wall {http_run['wall_s'] / stdout_run['wall_s']:.2f}x, streaming loop {loop:.2f}x, peak RSS "
        f"{http_run['peak_rss_mb'] - stdout_run['peak_rss_mb']:+.1f} MB against the same run without it; its client "
        f"read {http_run['client_windows']} of {http_run.get('windows', '?')} window events"
    )


if __name__ == "__main__":
    main()
