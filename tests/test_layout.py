"""The dependency direction and the edge install's promise: edge/ needs no TensorFlow, scipy or librosa."""

from __future__ import annotations

import ast
import subprocess
import sys

from conftest import ROOT

FORBIDDEN_IN_EDGE = {"tensorflow", "keras", "scipy", "librosa", "matplotlib"}
# Of serkit itself, the edge may import only itself and the shipped model's location.
ALLOWED_SERKIT_IN_EDGE = ("serkit.edge", "serkit.models")


def test_edge_imports_nothing_from_trainer_convert_or_heavy_libraries():
    for path in sorted((ROOT / "edge").rglob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for n in names:
                top = n.split(".")[0]
                # tensorflow is named only as the runtime of last resort, imported by string in runtime.py
                assert top not in FORBIDDEN_IN_EDGE, f"{path.relative_to(ROOT)} imports {n}"
                if top == "serkit":
                    assert n.startswith(ALLOWED_SERKIT_IN_EDGE), f"{path.relative_to(ROOT)} imports {n}"


def test_edge_runs_the_shipped_model_with_heavy_libraries_blocked():
    code = (
        "import sys\n"
        "for m in ('tensorflow', 'keras', 'scipy', 'librosa', 'serkit.trainer', 'serkit.convert'):\n"
        "    sys.modules[m] = None\n"
        "import numpy as np\n"
        "from serkit.edge.audio import read_wav\n"
        "from serkit.edge.features import mfcc\n"
        "from serkit.edge.runtime import TFLiteModel\n"
        "from serkit.edge.spec import ModelSpec, spec_path_for\n"
        "from serkit.edge.windows import clip_windows\n"
        "from serkit.models import DEFAULT_MODEL\n"
        "spec = ModelSpec.load(spec_path_for(DEFAULT_MODEL))\n"
        "m = TFLiteModel(DEFAULT_MODEL, spec)\n"
        "x = 0.1 * np.sin(np.arange(48000) / 7.0)\n"
        "w = clip_windows(spec.normalise(mfcc(x, spec.features)), spec.frames_per_window, spec.hop_frames)\n"
        "p = m.predict(w)\n"
        "assert p.shape == (1, 8) and abs(p.sum() - 1) < 0.05, p\n"
        "print(m.backend)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() in ("ai_edge_litert", "tflite_runtime")


STAGES = {"serkit": "serkit", **{f"serkit.{d}": d for d in ("edge", "trainer", "convert", "deploy", "models")},
          "serkit.firmware_configs": "firmware_configs"}  # fmt: skip


def _import_graph() -> dict[str, set[str]]:
    """Module → the serkit modules it imports anywhere in its text (inside functions too)."""
    modules = {}
    for package, folder in STAGES.items():
        for path in (ROOT / folder).glob("*.py"):
            modules[package if path.stem == "__init__" else f"{package}.{path.stem}"] = path
    graph = {}
    for name, path in modules.items():
        deps = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("serkit"):
                deps |= {f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in modules else node.module
                         for a in node.names}  # fmt: skip
            elif isinstance(node, ast.Import):
                deps |= {a.name for a in node.names if a.name.startswith("serkit")}
        graph[name] = {d for d in deps if d in modules and d != name}
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1 on the current path, 2 done

    def visit(node: str, path: list[str]) -> list[str] | None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (found := visit(nxt, [*path, nxt])):
                return found
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (found := visit(start, [start])):
            return found
    return None


def test_no_import_cycle_in_the_package():
    graph = _import_graph()
    assert len(graph) > 40  # the walk found the package
    assert _cycle(graph) is None, " -> ".join(_cycle(graph))
    # Nothing below the CLI imports it.
    assert not [m for m, deps in graph.items() if "serkit.cli" in deps and m != "serkit.__main__"]


def test_the_cycle_finder_finds_one():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None
