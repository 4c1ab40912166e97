"""Open an untrusted HDF5 file (lava-dl netx `.net`/`.h5`, NIR `.nir`) so that reading it
touches only that file and allocates only what the limits allow.

HDF5 can make a dataset read bytes from elsewhere: external storage (raw data in another
file, e.g. /etc/passwd), external links (an object in another HDF5 file), virtual datasets
(a mapping onto other files), user-defined links, and filters loaded from plugin libraries.
`check_hdf5` walks every link and dataset of the file, without reading any data, and refuses
all of these, references, and declared sizes (per dataset, in total, number of objects,
nesting depth) above the limits below. Then the caller may read the file.

Variable-length strings live in the file's global heap, whose records carry their own
lengths: a corrupt one makes libhdf5 allocate gigabytes before it finds the record runs
past the end of the file. So each such dataset's records (contiguous storage only) and
the heap collections they point at are checked against the file's size and the limits
below from the file's bytes before libhdf5 reads them. A chunked dataset's chunk, which
libhdf5 decompresses whole, is bounded like a dataset.

    >>> with open_hdf5("net.net") as f:      # checked, then opened read-only
    ...     w = f["layer/0/weight"][()]
    >>> read_hdf5("net.nir")["node"]["type"]  # checked, every dataset read in one pass
"""
from __future__ import annotations

import contextlib
import os
from pathlib import Path

import numpy as np

from snncompile.errors import InputFileError

MAX_DATASET_BYTES = 1 << 28   # one dataset as declared (decompressed): 256 MiB
MAX_TOTAL_BYTES = 1 << 29     # all datasets of the file together: 512 MiB
MAX_OBJECTS = 1 << 16         # groups + datasets (a netx layer or NIR node is a few)
MAX_DEPTH = 16                # group nesting (NIR nests node/nodes/<name>/...)
MAX_VLEN_ELEMENTS = 1 << 12   # elements of a variable-length (string) dataset
MAX_NAME = 256                # characters of one link name
MAX_VLEN_BYTES = 1 << 20      # bytes of one variable-length string
MAX_HEAP_BYTES = 1 << 24      # one global heap collection (libhdf5 reads it whole)
# Filters built into libhdf5 / h5py: deflate, shuffle, fletcher32, szip, nbit, scaleoffset,
# lzf. Any other id would make libhdf5 search its plugin path and load a shared library.
SAFE_FILTERS = frozenset({1, 2, 3, 4, 5, 6, 32000})


def _h5py():
    try:
        import h5py
    except ImportError as exc:  # pragma: no cover - h5py is a dependency
        raise InputFileError(f"reading HDF5 files needs h5py ({exc})") from None
    return h5py


def check_hdf5(path: str | Path, what: str = "HDF5 file") -> None:
    """Refuse `path` (one InputFileError line naming the object) unless every object in it
    is a group or a plain dataset stored inside the file, within the size limits."""
    with open_hdf5(path, what):
        pass


@contextlib.contextmanager
def open_hdf5(path: str | Path, what: str = "HDF5 file"):
    """Open `path` read-only after `check_hdf5`'s checks; yields the h5py.File."""
    with _checked(path, what) as (f, _):
        yield f


class Leaf:
    """A checked dataset of `hdf5_tree`'s tree: its declared `shape`, `nbytes` (declared,
    decompressed) and `read()`, which returns what h5py's `dataset[()]` returns, or raises
    what it raised. The walk reads each dataset right after checking it, while it holds
    it open (numbers and fixed-length strings straight into a numpy array, the rest
    through h5py): no second lookup, no id kept open until the file closes."""

    __slots__ = ("shape", "nbytes", "_value", "_error")

    def __init__(self, shape, nbytes: int, value=None, error: BaseException | None = None):
        self.shape, self.nbytes, self._value, self._error = shape, nbytes, value, error

    def read(self):
        if self._error is not None:
            raise self._error
        return self._value


def _read(ds, shape, dtype, plain: bool, h5py):
    """`dataset[()]` of an open DatasetID."""
    if not plain or shape is None:
        return h5py.Dataset(ds)[()]
    arr = np.empty(shape, dtype=dtype)
    if arr.size:
        ds.read(h5py.h5s.ALL, h5py.h5s.ALL, arr)
    return arr[()] if arr.ndim == 0 else arr


def read_hdf5(path: str | Path, what: str = "HDF5 file") -> dict:
    """`path`'s groups as nested dicts {link name: dict or value}, after `check_hdf5`'s
    checks, from the one walk those make (no group is looked up by path again): every
    dataset's value as h5py's `dataset[()]` gives it. Read errors (corrupt data that the
    checks cannot see) propagate as h5py raises them, for the caller to phrase."""
    with hdf5_tree(path, what) as tree:
        return _values(tree)


def _values(tree: dict) -> dict:
    return {k: _values(v) if isinstance(v, dict) else v.read() for k, v in tree.items()}


@contextlib.contextmanager
def hdf5_tree(path: str | Path, what: str = "HDF5 file"):
    """`read_hdf5`'s tree with a `Leaf` for each dataset, to read while the file is open
    (inside the `with`), e.g. after checking its `nbytes`."""
    with _checked(path, what) as (_, walker):
        tree: dict = {}
        for name in walker.groups:
            node = tree
            for part in name.split("/"):
                node = node.setdefault(part, {})
        for name, leaf in walker.leaves:
            *parents, last = name.split("/")
            node = tree
            for part in parents:
                node = node.setdefault(part, {})
            node[last] = leaf
        yield tree


@contextlib.contextmanager
def _checked(path: str | Path, what: str):
    h5py = _h5py()
    path = Path(path)
    if not path.is_file():
        raise InputFileError(f"{path}: {what} not found (or not a regular file)")
    try:
        if not h5py.is_hdf5(str(path)):
            raise InputFileError(f"{path}: not an HDF5 file (expected a {what})")
        f = h5py.File(str(path), "r")
    except InputFileError:
        raise
    except Exception as exc:  # noqa: BLE001 - libhdf5 raises OSError & co. on bad bytes
        raise InputFileError(f"{path}: corrupt or truncated HDF5 file "
                             f"({type(exc).__name__}: {_short(exc)})") from None
    with f:
        walker = _Walker(path, h5py)
        try:
            walker.group(f, "", 0)
        except InputFileError:
            raise
        except Exception as exc:  # noqa: BLE001 - corrupt object headers
            raise InputFileError(f"{path}: corrupt HDF5 object structure "
                                 f"({type(exc).__name__}: {_short(exc)})") from None
        yield f, walker


def _short(exc) -> str:
    return " ".join(str(exc).split())[:120] or type(exc).__name__


class _Walker:
    """One C-level visit of every link (H5Lvisit: hard links only are descended, each
    group once), then each dataset's creation properties and type; counts objects and
    declared bytes. Low-level h5py: a 3,000-layer netx file has ~27,000 objects."""

    def __init__(self, path: Path, h5py):
        self.path, self.h5py = path, h5py
        self.total = 0
        self.leaves: list = []      # (name, Leaf) of every dataset, in visit order
        self.groups: list = []      # names of every group
        self._raw = None            # the file, opened for the heap checks

    def refuse(self, where: str, what: str) -> InputFileError:
        return InputFileError(f"{self.path}: {where or '/'}: {what}; refused (the file may "
                              "only refer to data stored inside itself)")

    def group(self, f, where: str, depth: int) -> None:
        links: list = []

        def visit(name, info):
            links.append((name, info.type))
            if len(links) > MAX_OBJECTS:
                return 1          # stop the visit
            return None
        f.id.links.visit(visit, info=True)
        if len(links) > MAX_OBJECTS:
            raise InputFileError(f"{self.path}: more than {MAX_OBJECTS} HDF5 objects")
        try:
            self.links(f, links)
        finally:
            if self._raw is not None:
                self._raw.close()

    def links(self, f, links: list) -> None:
        h5l, h5o, h5d = self.h5py.h5l, self.h5py.h5o, self.h5py.h5d
        for raw, kind in links:
            name = raw.decode("utf-8", "replace")
            here = "/" + name
            if len(name.rsplit("/", 1)[-1]) > MAX_NAME:
                raise InputFileError(f"{self.path}: {here[:80]}...: link name longer than "
                                     f"{MAX_NAME} characters")
            if name.count("/") >= MAX_DEPTH:
                raise InputFileError(f"{self.path}: {here[:80]}: groups nested deeper than "
                                     f"{MAX_DEPTH} levels")
            if kind == h5l.TYPE_EXTERNAL:
                target = f.id.links.get_val(raw)
                target = target[0] if isinstance(target, tuple) else target
                target = target.decode("utf-8", "replace") if isinstance(target, bytes) \
                    else str(target)
                raise self.refuse(here, f"external link to '{target[:80]}'")
            if kind == h5l.TYPE_SOFT:
                target = f.id.links.get_val(raw)
                target = target.decode("utf-8", "replace") if isinstance(target, bytes) \
                    else str(target)
                raise self.refuse(here, f"soft link to '{target[:80]}'")
            if kind != h5l.TYPE_HARD:
                raise self.refuse(here, f"link of type {kind}")
            obj = h5o.open(f.id, raw)
            if isinstance(obj, h5d.DatasetID):
                self.leaves.append((name, self.dataset(obj, here, f)))
            elif isinstance(obj, self.h5py.h5g.GroupID):
                self.groups.append(name)
            else:
                raise self.refuse(here, f"object of type {type(obj).__name__} (only groups "
                                        "and datasets are read)")

    def dataset(self, ds, where: str, f) -> "Leaf":
        h5py = self.h5py
        h5t = h5py.h5t
        dcpl = ds.get_create_plist()
        layout = dcpl.get_layout()
        if layout == h5py.h5d.VIRTUAL:
            raise self.refuse(where, "virtual dataset (maps data from other files)")
        if dcpl.get_external_count() > 0:
            name = dcpl.get_external(0)[0]
            name = name.decode("utf-8", "replace") if isinstance(name, bytes) else str(name)
            raise self.refuse(where, f"external storage in '{name[:80]}'")
        for i in range(dcpl.get_nfilters()):
            code = dcpl.get_filter(i)[0]
            if code not in SAFE_FILTERS:
                raise self.refuse(where, f"filter {code} (not built in: it would load a "
                                         "plugin library)")
        tid = ds.get_type()
        cls = tid.get_class()
        if cls == h5t.REFERENCE:
            raise self.refuse(where, "object or region references")
        variable = cls == h5t.VLEN or (cls == h5t.STRING and tid.is_variable_str())
        if cls not in (h5t.INTEGER, h5t.FLOAT, h5t.STRING, h5t.ENUM) or \
                (cls == h5t.ENUM and tid.get_super().get_size() != 1):
            raise InputFileError(f"{self.path}: {where}: datasets of HDF5 type class {cls} "
                                 "are not read (booleans, integers, floats and strings "
                                 "only)")
        count = 1
        shape = ds.shape
        for n in (shape or ()):
            count *= int(n)
        if variable and count > MAX_VLEN_ELEMENTS:
            raise InputFileError(f"{self.path}: {where}: {count} variable-length strings "
                                 f"exceed {MAX_VLEN_ELEMENTS}")
        nbytes = count * max(tid.get_size(), 1)
        if nbytes > MAX_DATASET_BYTES:
            raise InputFileError(f"{self.path}: {where}: declared shape {shape} "
                                 f"({nbytes} bytes) exceeds {MAX_DATASET_BYTES} bytes")
        self.total += nbytes
        if self.total > MAX_TOTAL_BYTES:
            raise InputFileError(f"{self.path}: datasets declare more than {MAX_TOTAL_BYTES}"
                                 f" bytes in total (reached at {where})")
        if layout == h5py.h5d.CHUNKED:
            chunk = 1
            for n in dcpl.get_chunk():
                chunk *= int(n)
            if chunk * max(tid.get_size(), 1) > MAX_DATASET_BYTES:
                raise InputFileError(f"{self.path}: {where}: chunk shape "
                                     f"{tuple(dcpl.get_chunk())} ({chunk} elements) exceeds "
                                     f"{MAX_DATASET_BYTES} bytes")
        if variable and count:
            self.heap_records(ds, layout, where, count, f)
        plain = cls in (h5t.INTEGER, h5t.FLOAT, h5t.ENUM) or (cls == h5t.STRING
                                                              and not variable)
        try:
            return Leaf(shape, nbytes, _read(ds, shape, tid.dtype if plain else None, plain,
                                             h5py))
        except Exception as exc:  # noqa: BLE001 - corrupt data: raised where it is read
            return Leaf(shape, nbytes, error=exc)

    def heap_records(self, ds, layout, where: str, count: int, f) -> None:
        """Check a variable-length string dataset's records in the file's bytes before
        libhdf5 reads them: each is (length: 4 bytes, heap collection address, object
        index: 4 bytes); the length must stay under MAX_VLEN_BYTES and the collection it
        points at be a 'GCOL' of at most MAX_HEAP_BYTES inside the file."""
        h5py = self.h5py
        if layout != h5py.h5d.CONTIGUOUS:
            raise InputFileError(f"{self.path}: {where}: variable-length strings stored "
                                 "chunked or compact are not read (contiguous only)")
        fcpl = f.id.get_create_plist()
        addr_size, size_size = fcpl.get_sizes()
        base = fcpl.get_userblock()
        record = 4 + addr_size + 4
        offset, stored = ds.get_offset(), ds.get_storage_size()
        if offset is None or stored == 0:
            return                                   # never written: reads as empty
        bad = None
        if stored != count * record:
            bad = f"{stored} bytes of records for {count} strings"
        if self._raw is None:
            self._raw = open(self.path, "rb")        # noqa: SIM115 - closed after the walk
        raw, end = self._raw, os.fstat(self._raw.fileno()).st_size
        if bad is None and offset + stored > end:
            bad = "records past the end of the file"
        data = b""
        if bad is None:
            raw.seek(offset)
            data = raw.read(stored)
        seen: set = set()
        for i in range(0, len(data) if bad is None else 0, record):
            length = int.from_bytes(data[i:i + 4], "little")
            addr = int.from_bytes(data[i + 4:i + 4 + addr_size], "little")
            if length == 0:
                continue
            if length > MAX_VLEN_BYTES:
                bad = f"a string of {length} bytes (limit {MAX_VLEN_BYTES})"
                break
            if addr in seen:
                continue
            seen.add(addr)
            at = base + addr
            head = b""
            if at + 8 + size_size <= end:
                raw.seek(at)
                head = raw.read(8 + size_size)
            if head[:4] != b"GCOL":
                bad = f"a string in no heap collection (address {addr})"
                break
            size = int.from_bytes(head[8:8 + size_size], "little")
            if size > MAX_HEAP_BYTES or at + size > end:
                bad = (f"a heap collection of {size} bytes at {addr} (file {end} bytes, "
                       f"limit {MAX_HEAP_BYTES})")
                break
        if bad is not None:
            raise InputFileError(f"{self.path}: {where}: corrupt variable-length strings "
                                 f"({bad}); refused")
