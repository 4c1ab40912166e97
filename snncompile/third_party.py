"""Import third-party packages without their import-time noise.

lava-dl prints "WARNING: Prophesee Dataset Toolbox could not be found!" (three lines on
stdout, lava/lib/dl/slayer/object_detection/dataset/prophesee_automotive.py) whenever slayer
is imported, and torch logs "No CUDA runtime is found, using CUDA_HOME=..." from
torch/utils/cpp_extension.py when slayer loads it on a machine without CUDA. Neither concerns
snncompile's users (no object-detection data set, no CUDA kernels are used), and the first
would land in the middle of our stdout tables.

`import_quietly("lava.lib.dl.slayer")` imports a module with exactly those messages dropped:
stdout printed during the import is captured and re-printed except the known Prophesee lines;
a logging filter drops only the CUDA-runtime record. Everything else (our own warnings,
other third-party output, exceptions) passes unchanged.
"""
from __future__ import annotations

import contextlib
import importlib
import io
import logging
import sys

_PROPHESEE = ("WARNING: Prophesee Dataset Toolbox could not be found!",
              "Only Prophesee DVS demo will not run properly.",
              "Please install it from https://github.com/prophesee-ai/"
              "prophesee-automotive-dataset-toolbox")
_CUDA = "No CUDA runtime is found"


class _DropCudaRuntime(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(_CUDA)


_FILTER = _DropCudaRuntime()


def install_log_filter() -> None:
    """Drop torch's 'No CUDA runtime is found' record (idempotent)."""
    log = logging.getLogger("torch.utils.cpp_extension")
    if _FILTER not in log.filters:
        log.addFilter(_FILTER)


def import_quietly(name: str):
    """`importlib.import_module(name)` without the known import-time noise."""
    install_log_filter()
    if name in sys.modules:
        return sys.modules[name]
    buf = io.StringIO()
    try:
        with contextlib.redirect_stdout(buf):
            return importlib.import_module(name)
    finally:
        kept = [ln for ln in buf.getvalue().splitlines() if ln.strip() not in _PROPHESEE]
        if kept:
            print("\n".join(kept))
