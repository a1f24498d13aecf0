"""The Raspberry Pi half of serkit: numpy features, the int8 runtime, the MQTT agent.

Everything under edge/ runs with the edge install alone (numpy, paho-mqtt, a
TFLite runtime) and imports nothing from trainer/ or convert/.
"""

from __future__ import annotations

import functools
import os


@functools.cache
def version() -> str:
    """The installed distribution's version, looked up on first use: importlib.metadata alone costs
    about a third of numpy's import time, which every command would otherwise pay at start-up."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed

    try:
        return installed("serkit")
    except PackageNotFoundError:  # running from a source tree that was never installed
        return "0.0.0+source"


def __getattr__(name: str) -> str:  # `from serkit.edge import __version__` keeps working, lazily
    if name == "__version__":
        return version()
    raise AttributeError(name)


# The numeric libraries' thread pools: the edge works on small matrices a window at a time, where
# threads cost more than they give (and compete with the audio thread on a Pi). Read once, when
# numpy starts its pool, so set before numpy is first imported; the benchmarks use the same.
EDGE_THREAD_ENV = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def pin_numeric_threads() -> None:
    """One BLAS/OpenMP thread unless the environment already says otherwise."""
    for name, value in EDGE_THREAD_ENV.items():
        os.environ.setdefault(name, value)
