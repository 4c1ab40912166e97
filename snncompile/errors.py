"""Named exceptions. The CLI turns any `SnnCompileError` into one line on stderr and exit 2.

Messages follow `<where>: <what> (<value>) exceeds <limit>; <what to do>` so that a user can
find the file, layer, neuron or time step without a traceback.
"""
from __future__ import annotations


class SnnCompileError(Exception):
    """Base class of every error the tool reports to a user."""


class InputFileError(SnnCompileError):
    """A file is missing, truncated, corrupt, hostile or has the wrong contents."""


class UnsupportedError(SnnCompileError):
    """A layer, node or option the compiler or a target cannot handle."""


class GraphError(SnnCompileError):
    """The intermediate graph is malformed (shape mismatch, dangling edge, cycle...)."""


class QuantizationError(SnnCompileError):
    """A parameter cannot be represented in the target's fixed point."""


class ResourceLimitError(SnnCompileError):
    """A network or layer does not fit a per-core or per-chip limit of the target."""


class OverflowDetected(SnnCompileError):
    """Strict simulation saw a wrap or saturation (layer, neuron, time step named)."""


class BackendError(SnnCompileError):
    """A backend (Lava) failed or is not installed."""


class OutputFileError(SnnCompileError):
    """An output cannot be written (bad path, no space, read-only, permission...)."""


def is_max_pool(kind: str) -> bool:
    """True for a layer / node / module type name that denotes max pooling (maxpool2d,
    MaxPool2d, MaxPool1d, max_pool2d, ...)."""
    return "maxpool" in kind.lower().replace("_", "")


def max_pool_refused(where: str, kind: str) -> UnsupportedError:
    """The one refusal for max pooling, wherever it is met (training config, NIR, norse)."""
    return UnsupportedError(
        f"{where}: {kind} is not representable on Loihi (a neuron sums weighted spikes and "
        "cannot take a maximum); use sumpool2d or avgpool2d (NIR SumPool2d / AvgPool2d), or a "
        "conv2d with stride equal to the pooling kernel, instead")
