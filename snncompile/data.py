"""Input files: `.npz` archives (no pickles) with

* `inputs`: integer or boolean array (samples, steps, *input_shape); spikes are 0/1, graded
  values are unsigned integers below 2**bits of the network's input (signed when the
  input says so); bias frames (a netx input layer driven through its bias, Input encoding
  "bias") are the input neurons' bias mantissas, signed `bits`-bit integers, each sample's
  frame repeated at every one of its steps (a frame is held for the whole sample; the
  steps axis says how long);
* `labels` (optional): integer array (samples,) of class indices.

Anything else is rejected with one line naming the file and what is wrong.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .errors import InputFileError
from .ir import Input
from .ir.graph import load_npz

FORMAT_HELP = ("an .npz with 'inputs' (samples, steps, *input_shape) integers and optional "
               "'labels' (samples,)")


def load_inputs(path: str | Path, inp: Input, n_classes: int | None = None,
                limit: int | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """Validate and return (inputs as int64, labels or None)."""
    path = Path(path)
    if path.suffix != ".npz":
        raise InputFileError(f"{path}: inputs must be {FORMAT_HELP}")
    data = load_npz(path)
    if "inputs" not in data:
        raise InputFileError(f"{path}: no 'inputs' array (found {sorted(data) or 'none'}); "
                             f"expected {FORMAT_HELP}")
    unknown = sorted(set(data) - {"inputs", "labels"})
    if unknown:
        raise InputFileError(f"{path}: unexpected arrays {unknown}; expected {FORMAT_HELP}")
    x = data["inputs"]
    if x.dtype.kind not in "iub":
        raise InputFileError(f"{path}: 'inputs' has dtype {x.dtype}; it must hold integers "
                             "(spikes 0/1 or graded values)")
    want = ("samples", "steps") + inp.shape
    if x.ndim != len(want) or tuple(x.shape[2:]) != inp.shape:
        raise InputFileError(f"{path}: 'inputs' has shape {x.shape}; the network expects "
                             f"({', '.join(map(str, want))})")
    if x.shape[0] == 0 or x.shape[1] == 0:
        raise InputFileError(f"{path}: 'inputs' is empty (shape {x.shape})")
    x = x.astype(np.int64)
    lo, hi = inp.value_range()
    lo_v, hi_v = int(x.min()), int(x.max())
    if lo_v < lo or hi_v > hi:
        kind = "spikes" if inp.encoding == "spikes" else \
            f"{inp.bits}-bit {'signed ' if inp.signed else ''}{inp.encoding} values"
        raise InputFileError(f"{path}: 'inputs' values span [{lo_v}, {hi_v}] but the network "
                             f"takes {kind} in [{lo}, {hi}]")
    if inp.is_bias:
        moved = np.argwhere(np.any(x != x[:, :1], axis=tuple(range(2, x.ndim))))
        if len(moved):
            raise InputFileError(f"{path}: 'inputs' sample {moved[0][0]} changes its bias "
                                 f"frame at step {moved[0][1]}; a bias frame is held for all "
                                 "steps of its sample (repeat it along the steps axis)")
    labels = None
    if "labels" in data:
        labels = data["labels"]
        if labels.dtype.kind not in "iu" or labels.shape != (x.shape[0],):
            raise InputFileError(f"{path}: 'labels' must be integers of shape ({x.shape[0]},),"
                                 f" got {labels.dtype} {labels.shape}")
        labels = labels.astype(np.int64)
        if n_classes is not None and (labels.min() < 0 or labels.max() >= n_classes):
            raise InputFileError(f"{path}: 'labels' span [{labels.min()}, {labels.max()}] but "
                                 f"the network has {n_classes} outputs")
    if limit is not None:
        x = x[:limit]
        labels = None if labels is None else labels[:limit]
    return x, labels


def save_inputs(path: str | Path, inputs: np.ndarray, labels: np.ndarray | None = None):
    arrays = {"inputs": np.asarray(inputs)}
    if labels is not None:
        arrays["labels"] = np.asarray(labels)
    np.savez_compressed(path, **arrays)


def is_dataset(spec: str | Path) -> bool:
    """True when `spec` names a data set of shards (a directory or a glob) rather than one
    `.npz` file."""
    text = str(spec)
    return Path(text).is_dir() or any(ch in text for ch in "*?[")


def shard_paths(spec: str | Path) -> list[Path]:
    """The `.npz` shards of a data set, in name order: a directory's `*.npz` files, or the
    files a glob matches. Each shard is read (and validated like one file) on its own."""
    import glob

    text = str(spec)
    if Path(text).is_dir():
        found = sorted(p for p in Path(text).iterdir() if p.suffix == ".npz")
    else:
        found = sorted(Path(p) for p in glob.glob(text) if p.endswith(".npz"))
    found = [p for p in found if p.is_file()]
    if not found:
        raise InputFileError(f"{text}: no .npz shards found (a data set is a directory or a "
                             f"glob of shards, each {FORMAT_HELP})")
    return found


def iter_shards(spec: str | Path, inp: Input, n_classes: int | None = None):
    """Yield (path, inputs, labels, error) shard by shard, never holding two at once; a shard
    that fails validation yields its one-line error (inputs None) and the others go on."""
    for path in shard_paths(spec):
        try:
            x, y = load_inputs(path, inp, n_classes)
        except InputFileError as exc:
            yield path, None, None, str(exc)
            continue
        yield path, x, y, None
