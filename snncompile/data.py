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

import math
import zipfile
from pathlib import Path

import numpy as np

from .errors import InputFileError
from .ir import Input

FORMAT_HELP = ("an .npz with 'inputs' (samples, steps, *input_shape) integers and optional "
               "'labels' (samples,)")
MEMBERS = ("inputs", "labels")
#: elements of 'inputs' actually read (after --limit): they become int64, 8 bytes each
MAX_INPUT_ELEMENTS = 1 << 26
MAX_HEADER = 1 << 16           # bytes of an .npy header (numpy writes < 200)


def load_inputs(path: str | Path, inp: Input, n_classes: int | None = None,
                limit: int | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """Validate and return (inputs as int64, labels or None): the first `limit` samples.

    Sizes are checked from the .npy headers before anything is decompressed, and only the
    first `limit` samples are decompressed and cast, so a small file cannot expand into
    memory (a deflate bomb is refused by its declared shape).

        >>> x, y = load_inputs("test.npz", graph.input_node(), n_classes=10, limit=100)
    """
    path = Path(path)
    if path.suffix != ".npz":
        raise InputFileError(f"{path}: inputs must be {FORMAT_HELP}")
    with _open_zip(path) as zf:
        members = {}
        for info in zf.infolist():
            key = info.filename[:-4] if info.filename.endswith(".npy") else info.filename
            if key in members:
                raise InputFileError(f"{path}: array '{_clip(key)}' appears twice")
            members[key] = info
        if "inputs" not in members:
            raise InputFileError(f"{path}: no 'inputs' array (found "
                                 f"{_clip(sorted(members)) if members else 'none'}); "
                                 f"expected {FORMAT_HELP}")
        unknown = sorted(set(members) - set(MEMBERS))
        if unknown:
            raise InputFileError(f"{path}: unexpected arrays {_clip(unknown)}; expected "
                                 f"{FORMAT_HELP}")
        x = _Member(path, zf, members["inputs"], "inputs")
        if x.dtype.kind not in "iub":
            raise InputFileError(f"{path}: 'inputs' has dtype {x.dtype}; it must hold "
                                 "integers (spikes 0/1 or graded values)")
        want = ("samples", "steps") + inp.shape
        if len(x.shape) != len(want) or tuple(x.shape[2:]) != inp.shape:
            raise InputFileError(f"{path}: 'inputs' has shape {x.shape}; the network expects "
                                 f"({', '.join(map(str, want))})")
        if math.prod(x.shape) == 0:
            raise InputFileError(f"{path}: 'inputs' is empty (shape {x.shape})")
        n = x.shape[0] if limit is None else min(int(limit), x.shape[0])
        per_sample = math.prod(x.shape[1:])
        if n * per_sample > MAX_INPUT_ELEMENTS:
            raise InputFileError(
                f"{path}: 'inputs' {(n,) + x.shape[1:]} ({n * per_sample:,} values) exceeds "
                f"{MAX_INPUT_ELEMENTS:,} values; use --limit / --calib-samples for fewer "
                "samples")
        y = None
        if "labels" in members:
            y = _Member(path, zf, members["labels"], "labels")
            if y.dtype.kind not in "iu" or y.shape != (x.shape[0],):
                raise InputFileError(f"{path}: 'labels' must be integers of shape "
                                     f"({x.shape[0]},), got {y.dtype} {y.shape}")
        xs = x.read(n)
        ys = None if y is None else y.read(n)
    lo, hi = inp.value_range()
    lo_v, hi_v = int(xs.min()), int(xs.max())
    if lo_v < lo or hi_v > hi:
        kind = "spikes" if inp.encoding == "spikes" else \
            f"{inp.bits}-bit {'signed ' if inp.signed else ''}{inp.encoding} values"
        raise InputFileError(f"{path}: 'inputs' values span [{lo_v}, {hi_v}] but the network "
                             f"takes {kind} in [{lo}, {hi}]")
    if inp.is_bias:
        moved = np.argwhere(np.any(xs != xs[:, :1], axis=tuple(range(2, xs.ndim))))
        if len(moved):
            raise InputFileError(f"{path}: 'inputs' sample {moved[0][0]} changes its bias "
                                 f"frame at step {moved[0][1]}; a bias frame is held for all "
                                 "steps of its sample (repeat it along the steps axis)")
    labels = None
    if ys is not None:
        if n_classes is not None and (int(ys.min()) < 0 or int(ys.max()) >= n_classes):
            raise InputFileError(f"{path}: 'labels' span [{ys.min()}, {ys.max()}] but "
                                 f"the network has {n_classes} outputs")
        labels = ys.astype(np.int64)
    return xs.astype(np.int64), labels


def _clip(value, n: int = 120) -> str:
    text = repr(value) if not isinstance(value, str) else value
    text = text.encode("unicode_escape").decode("ascii")
    return text if len(text) <= n else text[:n - 3] + "..."


def _open_zip(path: Path) -> zipfile.ZipFile:
    if not path.is_file():
        raise InputFileError(f"{path}: not found (or not a regular file)")
    try:
        return zipfile.ZipFile(path)
    except Exception as exc:  # noqa: BLE001 - BadZipFile, OSError, struct errors...
        raise InputFileError(f"{path}: corrupt or not an .npz file ({_first(exc)})") from None


def _first(exc) -> str:
    msg = str(exc).splitlines()[0][:160] if str(exc) else ""
    return msg or type(exc).__name__


class _Member:
    """One .npy member of an .npz: its header parsed from the stream (nothing else read)."""

    def __init__(self, path: Path, zf: zipfile.ZipFile, info: zipfile.ZipInfo, name: str):
        self.path, self.zf, self.info, self.name = path, zf, info, name
        try:
            with zf.open(info) as fh:
                self.dtype, self.shape, self.fortran, self.offset = self._header(fh)
        except InputFileError:
            raise
        except Exception as exc:  # noqa: BLE001 - zlib, zip flags, npy header errors
            raise self.bad(f"unreadable ({_first(exc)})") from None
        self.nbytes = math.prod(self.shape) * self.dtype.itemsize
        if self.offset + self.nbytes != info.file_size:
            raise self.bad(f"declares shape {self.shape} of {self.dtype} "
                           f"({self.nbytes} bytes) but the member holds "
                           f"{info.file_size - self.offset} data bytes")

    def bad(self, what: str) -> InputFileError:
        return InputFileError(f"{self.path}: '{self.name}' {what}")

    def _header(self, fh):
        fmt = np.lib.format
        magic = fh.read(len(fmt.MAGIC_PREFIX) + 2)
        if len(magic) < 8 or not magic.startswith(fmt.MAGIC_PREFIX):
            raise self.bad("is not an .npy array (no npy magic)")
        major = magic[-2]
        if major not in (1, 2, 3):
            raise self.bad(f"has unsupported .npy version {major}")
        size_len = 2 if major == 1 else 4
        raw = fh.read(size_len)
        hlen = int.from_bytes(raw, "little") if len(raw) == size_len else -1
        if not 0 <= hlen <= MAX_HEADER:
            raise self.bad("has a truncated or oversize .npy header")
        text = fh.read(hlen)
        if len(text) != hlen:
            raise self.bad("has a truncated .npy header")
        import ast
        try:
            head = ast.literal_eval(text.decode("latin-1" if major < 3 else "utf-8"))
            dtype = np.dtype(head["descr"]) if isinstance(head["descr"], str) else None
            shape, fortran = tuple(head["shape"]), bool(head["fortran_order"])
        except Exception:  # noqa: BLE001 - any malformed header
            raise self.bad("has a malformed .npy header") from None
        if dtype is None or dtype.hasobject or dtype.fields is not None:
            raise self.bad(f"has dtype {head['descr']!r}: object, structured and pickled "
                           "arrays are not read")
        if not all(isinstance(d, int) and d >= 0 for d in shape):
            raise self.bad(f"has an invalid shape {_clip(shape)}")
        return dtype, shape, fortran, len(magic) + size_len + hlen

    def read(self, n: int) -> np.ndarray:
        """The first `n` entries along axis 0 (all of a Fortran-order array, then sliced:
        its bytes are not sample-major)."""
        count = math.prod(self.shape[1:]) * (n if not self.fortran else self.shape[0])
        want = count * self.dtype.itemsize
        try:
            with self.zf.open(self.info) as fh:
                fh.read(self.offset)
                data = fh.read(want)
        except Exception as exc:  # noqa: BLE001 - corrupt deflate data, CRC, zip flags
            raise self.bad(f"is corrupt ({_first(exc)})") from None
        if len(data) != want:
            raise self.bad("is truncated")
        shape = ((n if not self.fortran else self.shape[0]),) + tuple(self.shape[1:])
        arr = np.frombuffer(data, self.dtype, count)
        arr = arr.reshape(shape, order="F" if self.fortran else "C")
        return arr[:n]


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


def take_samples(spec: str | Path, inp: Input, limit: int):
    """The first `limit` samples of data set `spec`, read shard by shard (each validated on
    its own, and only as many samples decompressed as are still wanted): (inputs, the shard
    names used, one-line errors of shards skipped). Shards must agree in time steps."""
    parts, used, bad = [], [], []
    left = int(limit)
    for path in shard_paths(spec):
        if left <= 0:
            break
        try:
            x, _ = load_inputs(path, inp, limit=left)
        except InputFileError as exc:
            bad.append(f"{path.name}: {exc}")
            continue
        if parts and x.shape[1:] != parts[0].shape[1:]:
            bad.append(f"{path.name}: {path}: 'inputs' has shape {x.shape[1:]} per sample "
                       f"but the data set's first shard has {parts[0].shape[1:]}")
            continue
        parts.append(x)
        used.append(path.name)
        left -= len(x)
    if not parts:
        raise InputFileError(f"{spec}: no shard could be read: " + "; ".join(bad))
    return np.concatenate(parts), used, bad
