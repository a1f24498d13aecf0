"""What is inside a .tflite: ops, tensor types, size, and an estimate of the tensor arena.

The audit is the proof behind "full int8": a model that slipped back to float,
kept a WHILE loop, or needs Flex/custom ops would not run (or not run fast) on
the Pi's builtin-only runtime.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np

from serkit.edge.errors import SerkitError
from serkit.edge.runtime import interpreter_class

FORBIDDEN = ("WHILE", "CUSTOM", "DELEGATE_FLEX")
# Ops whose float tensors are allowed in an int8 graph: none between input and output.
_IGNORED = {"DELEGATE"}  # XNNPACK's own node, added by the interpreter, not part of the file


def audit(path: Path) -> dict:
    """Op histogram, tensor dtypes, file size, arena estimate and the list of problems (empty = full int8)."""
    cls, backend = interpreter_class()
    try:
        # No delegate: the audit must see the file's own ops, not XNNPACK's rewrites.
        interp = cls(
            model_path=str(path),
            experimental_preserve_all_tensors=True,
            num_threads=1,
            experimental_op_resolver_type=_builtin_without_defaults(backend),
        )
        interp.allocate_tensors()
    except (ValueError, RuntimeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if "Flex" in str(exc) or "custom" in str(exc).lower():
            raise SerkitError(
                f"{path}: needs Flex (select TF) or custom ops that the Pi runtime lacks: {first}"
            ) from None
        raise SerkitError(f"{path}: cannot load for the audit: {first}") from None
    ops = [o for o in interp._get_ops_details() if o["op_name"] not in _IGNORED]
    tensors = {t["index"]: t for t in interp.get_tensor_details()}
    inp, out = interp.get_input_details()[0], interp.get_output_details()[0]
    problems = []
    if inp["dtype"] != np.int8:
        problems.append(f"input is {np.dtype(inp['dtype']).name}, not int8")
    if out["dtype"] != np.int8:
        problems.append(f"output is {np.dtype(out['dtype']).name}, not int8")
    hist = Counter(o["op_name"] for o in ops)
    for name in hist:
        if any(name.startswith(f) for f in FORBIDDEN) or name.startswith("Flex"):
            problems.append(f"op {name} x{hist[name]} is not allowed (WHILE, Flex and custom ops break the int8 edge)")
    float_ops = Counter()
    for o in ops:
        if any(tensors[i]["dtype"] == np.float32 for i in o["outputs"] if i in tensors):
            float_ops[o["op_name"]] += 1
    if float_ops:
        shown = ", ".join(f"{k} x{v}" for k, v in sorted(float_ops.items()))
        problems.append(f"float ops between input and output: {shown}")
    return {
        "file_bytes": path.stat().st_size,
        "ops": len(ops),
        "op_histogram": dict(sorted(hist.items(), key=lambda kv: -kv[1])),
        "tensor_dtypes": dict(Counter(np.dtype(t["dtype"]).name for t in tensors.values())),
        "arena_bytes_estimate": _arena_estimate(ops, tensors, interp),
        "input": {"dtype": np.dtype(inp["dtype"]).name, "shape": [int(v) for v in inp["shape"]]},
        "output": {"dtype": np.dtype(out["dtype"]).name, "shape": [int(v) for v in out["shape"]]},
        "problems": problems,
    }


def _builtin_without_defaults(backend: str) -> object:
    """The op resolver that leaves XNNPACK out, from whichever runtime module is in use."""
    if backend == "ai_edge_litert":
        from ai_edge_litert.interpreter import OpResolverType
    elif backend == "tflite_runtime":
        from tflite_runtime.interpreter import OpResolverType
    else:
        from tensorflow.lite.python.interpreter import OpResolverType
    return OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES


def _arena_estimate(ops: list[dict], tensors: dict[int, dict], interp: object) -> int:
    """Peak bytes of simultaneously live activations over the op order (a linear-scan planner's lower bound).

    Constant tensors (weights) live in the flatbuffer, not the arena, so only tensors that
    some op writes, plus the graph input, count.
    """
    produced = {i for o in ops for i in o["outputs"]}
    first, last = {}, {}
    graph_in = {d["index"] for d in interp.get_input_details()}
    graph_out = {d["index"] for d in interp.get_output_details()}
    for i in graph_in:
        first[i] = 0
    for step, o in enumerate(ops):
        for i in o["outputs"]:
            first.setdefault(i, step)
            last[i] = max(last.get(i, step), step)
        for i in o["inputs"]:
            if i in produced or i in graph_in:
                last[i] = max(last.get(i, step), step)
    for i in graph_out:
        last[i] = len(ops)
    size = {
        i: int(np.prod(tensors[i]["shape"])) * np.dtype(tensors[i]["dtype"]).itemsize for i in first if i in tensors
    }
    peak = 0
    for step in range(len(ops) + 1):
        live = sum(size[i] for i in size if first[i] <= step <= last.get(i, first[i]))
        peak = max(peak, live)
    return int(peak)


def strip_names(path: Path) -> None:
    """Drop tensor/op name strings from the flatbuffer: on an unrolled RNN they are half the file."""
    from serkit.edge.quiet import captured_stderr

    with captured_stderr():  # importing TensorFlow prints its oneDNN and absl lines to fd 2
        from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model(str(path))
    flatbuffer_utils.strip_strings(model)
    flatbuffer_utils.write_model(model, str(path))
