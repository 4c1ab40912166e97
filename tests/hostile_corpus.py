"""Hostile-file corpus: a registry of case generators and the runner that feeds the cases to
the real CLI (`snncompile.cli.main(argv)`) inside one subprocess.

A *case* is an argv for one CLI call plus the files it names, written under its own folder
`<root>/cases/<id>/in/`; the command may write only under `<id>/out/`. Generators are
registered by name with `@register("kind")`, take a seeded `numpy.random.Generator` and a
`Ctx` (seed files, the case folders) and return the argv; adding an input kind (e.g. build
directories) is one more decorated function.

The runner (`python tests/hostile_corpus.py run ROOT START`) imports the CLI once, limits
its address space (RLIMIT_AS), installs an audit hook on file events and an inotify watch on
`<root>/outside/` (the files the HDF5 attacks point at: libhdf5 reads them in C, where no
audit hook sees it), and for every case records: exit status, stdout/stderr captured at the
file-descriptor level (so C libraries and warnings count), seconds, peak RSS, and every read
outside the case's inputs and every write outside its output folder. `check` turns a record
into a list of failures. The test (`tests/test_hostile_corpus.py`) drives it.
"""
from __future__ import annotations

import copy
import ctypes
import json
import os
import shutil
import signal
import struct
import sys
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
CASE_SECONDS = 30.0          # per case, wall clock (a tiny compile takes well under 1 s)
PEAK_RSS_MB = 1500           # per case, peak resident memory of the whole process
ADDRESS_SPACE_GB = 4         # RLIMIT_AS above what the imports already reserved
SECRET = b"SNNCOMPILE-CANARY-0c7f3e\n" * 8


# ------------------------------------------------------------------ registry
@dataclass
class Ctx:
    seeds: Path                 # valid seed files (read-only inputs of every case)
    outside: Path               # files no case may read (targets of the HDF5 attacks)
    case: Path                  # this case's folder: in/ (its files), out/ (its outputs)
    cache: dict
    quick: bool = False         # the fixed `make test` subset: smaller versions of big cases

    @property
    def inp(self) -> Path:
        return self.case / "in"

    @property
    def out(self) -> Path:
        return self.case / "out"


GENERATORS: dict[str, tuple[Callable[[np.random.Generator, Ctx], list[str]], float]] = {}
SECONDS: dict[str, float] = {}


def register(kind: str, weight: float = 1.0, seconds: float = CASE_SECONDS):
    """Register a case generator `fn(rng, ctx) -> argv` under `kind` (drawn with `weight`;
    each of its cases must finish within `seconds`)."""
    def deco(fn):
        GENERATORS[kind] = (fn, weight)
        SECONDS[kind] = seconds
        return fn
    return deco


def make_seeds(root: Path) -> None:
    """The valid files every case mutates, written by the real libraries (torch.save via
    snncompile, NIR via nir.write, netx via h5py), and a compiled build."""
    from conftest import make_tiny
    from test_fuzz import _fixed_graph, _sdnn_graph

    import h5py

    from snncompile.data import save_inputs
    from snncompile.formats.netx.write import export_netx
    from snncompile.formats.nir.write import write_nir
    from snncompile.frontends import import_checkpoint
    from snncompile.pipeline import compile_model

    seeds, outside = root / "seeds", root / "outside"
    seeds.mkdir(parents=True)
    outside.mkdir()
    make_tiny(seeds / "tiny.pt")
    write_nir(import_checkpoint(seeds / "tiny.pt"), seeds / "tiny.nir")
    export_netx(_fixed_graph(), seeds / "tiny.net")
    export_netx(_sdnn_graph(), seeds / "sdnn.net")
    rng = np.random.default_rng(1)
    x = (rng.random((4, 5, 1, 6, 6)) < 0.3).astype(np.uint8)
    save_inputs(seeds / "inputs.npz", x, np.array([0, 1, 2, 3]))
    save_inputs(seeds / "calib.npz", x)
    save_inputs(seeds / "graded.npz", rng.integers(0, 256, (2, 5, 1, 6, 6)))
    shutil.copyfile(REPO / "targets" / "loihi2.toml", seeds / "target.toml")
    compile_model(seeds / "tiny.pt", "loihi2", calib=x).save(seeds / "tiny.build")
    (outside / "secret.txt").write_bytes(SECRET)
    with h5py.File(outside / "secret.h5", "w") as f:
        f.create_dataset("w", data=np.frombuffer(SECRET, np.uint8).astype(np.float32))


def make_cases(root: Path, n: int, seed: int, kinds: list[str] | None = None,
               quick: bool = False) -> list[dict]:
    """`n` cases, kinds drawn by weight (round-robin over `kinds` first, so that every kind
    appears in even a small corpus), each with its own rng derived from (seed, index)."""
    kinds = kinds or sorted(GENERATORS)
    weights = np.array([GENERATORS[k][1] for k in kinds], float)
    pick = np.random.default_rng(seed)
    cache: dict = {}
    cases = []
    for i in range(n):
        kind = kinds[i] if i < len(kinds) else kinds[pick.choice(len(kinds),
                                                                 p=weights / weights.sum())]
        case = root / "cases" / f"{i:05d}"
        (case / "in").mkdir(parents=True)
        (case / "out").mkdir()
        ctx = Ctx(root / "seeds", root / "outside", case, cache, quick)
        errors = []
        for attempt in range(3):   # a generator bug must not end a long run: retry, report
            rng = np.random.default_rng([seed, i, attempt])
            try:
                argv = GENERATORS[kind][0](rng, ctx)
                break
            except Exception as exc:  # noqa: BLE001
                errors.append(f"{type(exc).__name__}: {str(exc)[:100]}")
                shutil.rmtree(case / "in")
                (case / "in").mkdir()
        else:
            raise RuntimeError(f"generator {kind} failed 3 times: {errors}")
        cases.append({"id": i, "kind": kind, "argv": argv, "dir": str(case),
                      "seconds": SECONDS[kind], "generator_errors": errors})
    (root / "cases.json").write_text(json.dumps(cases))
    return cases


# ------------------------------------------------------------------ mutations
def mutate_bytes(rng, data: bytes) -> bytes:
    """Random bytes, or `data` truncated, with bytes flipped or a slice overwritten (the
    mutations of tests/test_fuzz.py, drawn from a numpy rng)."""
    kind = rng.choice(["random", "truncate", "flip", "splice"], p=[.1, .2, .4, .3])
    if kind == "random":
        return rng.bytes(int(rng.integers(0, 512)))
    b = bytearray(data)
    if kind == "truncate":
        return bytes(b[:int(rng.integers(0, max(len(b) - 1, 1)))])
    if kind == "flip":
        for _ in range(int(rng.integers(1, 9))):
            b[int(rng.integers(0, len(b)))] ^= int(rng.integers(1, 256))
        return bytes(b)
    start = int(rng.integers(0, len(b)))
    chunk = rng.bytes(int(rng.integers(1, 65)))
    b[start:start + len(chunk)] = chunk
    return bytes(b)


HOSTILE_NUMBERS = [0, -1, 1, 2, 2.5, -3.5, 1e300, -1e300, float("nan"), float("inf"),
                   -float("inf"), 2 ** 31, 2 ** 62, -2 ** 63, 2 ** 100, 1 << 20, 1e-300]


def hostile_value(rng):
    """A value of any plain type: numbers at the edges, strings (paths, escapes), None,
    booleans, lists, deep nesting, dicts."""
    kind = int(rng.integers(0, 9))
    if kind <= 2:
        return HOSTILE_NUMBERS[int(rng.integers(0, len(HOSTILE_NUMBERS)))]
    if kind == 3:
        return ["", "../../etc/passwd", "/etc/passwd", "a\nb\x1b[31m", "x" * 5000,
                "dense", "lif", "graded", "spikes"][int(rng.integers(0, 9))]
    if kind == 4:
        return [None, True, False][int(rng.integers(0, 3))]
    if kind == 5:
        return [hostile_value(rng) for _ in range(int(rng.integers(0, 4)))]
    if kind == 6:
        deep: list = []
        for _ in range(int(rng.integers(10, 400))):
            deep = [deep]
        return deep
    if kind == 7:
        return {"type": "dense", "out": hostile_value(rng)}
    return int(rng.integers(-2 ** 40, 2 ** 40))


def _pick(rng, items):
    return items[int(rng.integers(0, len(items)))]


def _compile(ctx: Ctx, model: Path, *extra: str, calib: bool = True) -> list[str]:
    argv = ["compile", str(model), "-o", str(ctx.out / "model.build"), "--quiet"]
    if calib:
        argv += ["--calib", str(ctx.seeds / "calib.npz")]
    return argv + list(extra)


# ------------------------------------------------------------------ checkpoints (.pt)
@register("pt-bytes", 2)
def pt_bytes(rng, ctx):
    path = ctx.inp / "model.pt"
    path.write_bytes(mutate_bytes(rng, (ctx.seeds / "tiny.pt").read_bytes()))
    return _compile(ctx, path)


def _seed_ckpt(ctx) -> dict:
    if "ckpt" not in ctx.cache:
        import torch
        ctx.cache["ckpt"] = torch.load(ctx.seeds / "tiny.pt", weights_only=True)
    return copy.deepcopy(ctx.cache["ckpt"])


def _set_path(doc, path: list, value) -> None:
    for key in path[:-1]:
        doc = doc[key]
    doc[path[-1]] = value


def _config_paths(doc, prefix=()) -> list[tuple]:
    out = []
    if isinstance(doc, dict):
        for k, v in doc.items():
            out.append(prefix + (k,))
            out += _config_paths(v, prefix + (k,))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            out.append(prefix + (i,))
            out += _config_paths(v, prefix + (i,))
    return out


def _exotic_tensor(rng, shape):
    import torch
    w = torch.randn(shape)
    makers = [
        lambda: w.to(torch.float8_e4m3fn), lambda: w.to(torch.complex64),
        lambda: w.to(torch.int64), lambda: w.to_sparse(),
        lambda: torch.empty(shape, device="meta"),
        lambda: w.masked_fill(w > 0, float("nan")), lambda: w * float("inf"),
        lambda: torch.zeros(1).expand(*shape) if len(shape) else torch.zeros(()),
        lambda: torch.randn(tuple(s + 1 for s in shape)), lambda: w.double(),
        lambda: w.T if w.dim() == 2 else w, lambda: torch.zeros(1).expand(1 << 20, 256),
        lambda: [1.0, 2.0], lambda: "weights",
    ]
    return _pick(rng, makers)()


@register("pt-config", 3)
def pt_config(rng, ctx):
    """Valid torch.save files whose config or tensors are hostile."""
    import torch
    ckpt = _seed_ckpt(ctx)
    for _ in range(int(rng.integers(1, 4))):
        if rng.random() < 0.65:
            paths = _config_paths(ckpt["config"])
            _set_path(ckpt["config"], list(_pick(rng, paths)), hostile_value(rng))
        else:
            key = _pick(rng, sorted(ckpt["state_dict"]))
            shape = tuple(getattr(ckpt["state_dict"][key], "shape", (4,)))
            if int(np.prod(shape)) > 1 << 16:    # an earlier edit's huge view: keep files small
                shape = (4,)
            ckpt["state_dict"][key] = _exotic_tensor(rng, shape)
    path = ctx.inp / "model.pt"
    torch.save(ckpt, path)
    return _compile(ctx, path)


@register("pt-crafted", 1)
def pt_crafted(rng, ctx):
    import pickle

    import torch

    from snncompile.nn.checkpoint import FORMAT, VERSION
    path = ctx.inp / "model.pt"
    kind = int(rng.integers(0, 6))
    if kind == 0:      # 1 KB declaring 256 x 2**20 weights
        cfg = {"input": {"shape": [256]}, "layers": [{"type": "dense", "out": 1 << 20},
                                                     {"type": "lif", "du": .1, "dv": .1}]}
        torch.save({"format": FORMAT, "version": VERSION, "config": cfg,
                    "state_dict": {"layers.0.module.weight":
                                   torch.zeros(1).expand(1 << 20, 256)}}, path)
    elif kind in (1, 2):   # many flatten layers (5,000: refused; 1,500: compiled)
        n = 5000 if kind == 1 else 1500
        cfg = {"input": {"shape": [4]},
               "layers": [{"type": "flatten"}] * n + [{"type": "dense", "out": 2},
                                                      {"type": "lif", "du": .1, "dv": .1}]}
        torch.save({"format": FORMAT, "version": VERSION, "config": cfg,
                    "state_dict": {f"layers.{n}.module.weight": torch.randn(2, 4)}}, path)
    elif kind == 3:    # a pickle that would run a shell command if unpickled unsafely
        class Evil:
            def __reduce__(self):
                return (os.system, (f"touch {ctx.outside / 'pwned'}",))
        path.write_bytes(pickle.dumps({"format": FORMAT, "x": Evil()}))
    elif kind == 4:    # deep nesting in the pickle itself
        deep: list = []
        for _ in range(int(rng.integers(500, 2000))):
            deep = [deep]
        old = sys.getrecursionlimit()
        sys.setrecursionlimit(max(old, 10000))
        try:
            torch.save({"format": FORMAT, "version": VERSION, "config": {"input": deep,
                                                                     "layers": []},
                        "state_dict": {}}, path)
        finally:
            sys.setrecursionlimit(old)
    else:              # not a dict / wrong format / version
        torch.save(_pick(rng, [[1, 2], {"format": "x"}, {"format": FORMAT, "version": 99},
                               {"format": FORMAT, "version": VERSION, "config": 1,
                                "state_dict": 2}]), path)
    return _compile(ctx, path)


# ------------------------------------------------------------------ HDF5 (.nir, .net)
def _h5_datasets(path) -> list[str]:
    import h5py
    names = []
    with h5py.File(path, "r") as f:
        f.visititems(lambda n, o: names.append(n) if isinstance(o, h5py.Dataset) else None)
    return names


def h5_attack(rng, path: Path, outside: Path) -> None:
    """Replace a random dataset by data that lives elsewhere (or claims to be huge)."""
    import h5py
    key = _pick(rng, _h5_datasets(path))
    secret, secret_h5 = outside / "secret.txt", outside / "secret.h5"
    with h5py.File(path, "a") as f:
        old = f[key]
        shape = old.shape if old.dtype.kind in "iuf" else (8,)
        dtype = old.dtype if old.dtype.kind in "iuf" else np.dtype("f4")
        del f[key]
        attack = int(rng.integers(0, 7))
        if attack == 0:
            n = int(np.prod(shape)) * dtype.itemsize
            f.create_dataset(key, shape=shape, dtype=dtype, external=[(str(secret), 0, n)])
        elif attack == 1:
            f[key] = h5py.ExternalLink(str(secret_h5), "/w")
        elif attack == 2:
            layout = h5py.VirtualLayout(shape=(8,), dtype="f4")
            layout[...] = h5py.VirtualSource(str(secret_h5), "/w", shape=(8,))
            f.create_virtual_dataset(key, layout)
        elif attack == 3:
            f[key] = h5py.SoftLink("/" + _pick(rng, ["layer", "node", "nowhere"]))
        elif attack == 4:
            f.create_dataset(key, shape=(1 << 16, 1 << 14), dtype="f4", chunks=(64, 64),
                             compression="gzip")
        elif attack == 5:
            dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
            dcpl.set_chunk((max(1, int(np.prod(shape))),))
            dcpl.set_filter(int(_pick(rng, [32001, 32004, 307, 65000])),
                            h5py.h5z.FLAG_OPTIONAL)
            space = h5py.h5s.create_simple((max(1, int(np.prod(shape))),))
            h5py.h5d.create(f.id, key.encode(), h5py.h5t.py_create(dtype), space, dcpl=dcpl)
        else:
            f.create_dataset(key, data=np.array([f.ref], dtype=h5py.ref_dtype))


def h5_edit(rng, path: Path, roots: list[str]) -> None:
    """Delete datasets or replace them with values of any type/shape (valid HDF5)."""
    import h5py
    names = _h5_datasets(path)
    with h5py.File(path, "a") as f:
        for _ in range(int(rng.integers(1, 4))):
            key = _pick(rng, names)
            if key not in f:
                continue
            del f[key]
            if rng.random() < 0.2:
                continue
            value = hostile_value(rng)
            if isinstance(value, (list, dict)) or value is None:
                value = _pick(rng, [np.zeros((0,)), np.full((3, 3), 2 ** 40),
                                    np.array([np.nan, 1.0]), np.arange(7) - 3,
                                    np.ones((2, 2, 2, 2, 2), np.float32), b"Conv2d",
                                    b"dense", b"CUBA", b"SDNN", np.array([1.5, 2.5])])
            if isinstance(value, int) and abs(value) >= 2 ** 63:
                value = float(value)
            if isinstance(value, str):
                value = value.encode("utf-8", "replace").replace(b"\x00", b"_")[:64]
            f.create_dataset(key, data=value)


@register("nir-bytes", 1)
def nir_bytes(rng, ctx):
    path = ctx.inp / "model.nir"
    path.write_bytes(mutate_bytes(rng, (ctx.seeds / "tiny.nir").read_bytes()))
    return _compile(ctx, path)


@register("nir-struct", 2)
def nir_struct(rng, ctx):
    path = ctx.inp / "model.nir"
    shutil.copyfile(ctx.seeds / "tiny.nir", path)
    h5_edit(rng, path, ["node"])
    return _compile(ctx, path)


@register("nir-h5attack", 1.5)
def nir_h5attack(rng, ctx):
    path = ctx.inp / "model.nir"
    shutil.copyfile(ctx.seeds / "tiny.nir", path)
    h5_attack(rng, path, ctx.outside)
    return _compile(ctx, path)


def _netx_seed(rng) -> str:
    return _pick(rng, ["tiny.net", "sdnn.net"])


@register("netx-bytes", 1)
def netx_bytes(rng, ctx):
    path = ctx.inp / "model.net"
    path.write_bytes(mutate_bytes(rng, (ctx.seeds / _netx_seed(rng)).read_bytes()))
    return _compile(ctx, path, calib=False)


@register("netx-struct", 2)
def netx_struct(rng, ctx):
    """test_fuzz's netx keys, set to hostile values in random layers."""
    import h5py
    from test_fuzz import _KEYS, _blocked
    path = ctx.inp / "model.net"
    shutil.copyfile(ctx.seeds / _netx_seed(rng), path)
    if rng.random() < 0.4:
        h5_edit(rng, path, ["layer"])
    else:
        with h5py.File(path, "a") as f:
            n = len(f["layer"])
            for _ in range(int(rng.integers(1, 4))):
                group = f.require_group(f"layer/{int(rng.integers(0, n + 1))}")
                key = _pick(rng, _KEYS)
                if key in group:
                    del group[key]
                value = hostile_value(rng)
                if isinstance(value, (list, dict)) or value is None:
                    value = _pick(rng, [np.zeros((0,)), np.full((3, 3), 2 ** 40),
                                        np.arange(6) - 3, b"dense", b"conv", b"SDNN"])
                if isinstance(value, int) and abs(value) >= 2 ** 63:
                    value = float(value)
                if isinstance(value, str):
                    value = value.encode("utf-8", "replace").replace(b"\x00", b"_")[:64]
                if not _blocked(group, key):
                    group.create_dataset(key, data=value)
    return _compile(ctx, path, calib=False)


@register("netx-h5attack", 1.5)
def netx_h5attack(rng, ctx):
    path = ctx.inp / "model.net"
    shutil.copyfile(ctx.seeds / _netx_seed(rng), path)
    h5_attack(rng, path, ctx.outside)
    return _compile(ctx, path, calib=False)


@register("netx-layers", 0.03, seconds=120)
def netx_layers(rng, ctx):
    """A valid netx chain of many dense + CUBA layers (3,000: it ran for minutes when graph
    depth was quadratic; 1,000 in the quick subset), or more than the layer limit."""
    import h5py
    n = 1000 if ctx.quick else int(_pick(rng, [3000, 9000]))
    path = ctx.inp / "model.net"
    neuron = {"type": b"CUBA", "iDecay": 1024, "vDecay": 512, "vThMant": 80,
              "refDelay": 1, "gradedSpike": False}
    w = (np.eye(4) * 100).astype(np.float32)
    with h5py.File(path, "w") as f:
        layer = f.create_group("layer")
        g = layer.create_group("0")
        g["type"], g["shape"] = b"input", np.array([4, 1, 1])
        for i in range(1, n if n < 4000 else 4):
            g = layer.create_group(str(i))
            g["type"], g["shape"], g["weight"] = b"dense", np.array([4]), w
            ng = g.create_group("neuron")
            for k, v in neuron.items():
                ng[k] = v
        for i in range(4, n if n >= 4000 else 0):
            layer.create_group(str(i))
    return _compile(ctx, path, calib=False)


# ------------------------------------------------------------------ inputs (.npz)
def npy_header(descr: str, shape, fortran: bool = False) -> bytes:
    head = repr({"descr": descr, "fortran_order": fortran, "shape": tuple(shape)})
    head = head.encode("latin-1")
    head += b" " * (64 - (10 + len(head) + 1) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + len(head).to_bytes(2, "little") + head


def _npz(path: Path, members: dict[str, bytes], method=zipfile.ZIP_DEFLATED) -> None:
    with zipfile.ZipFile(path, "w", method) as zf:
        for name, data in members.items():
            zf.writestr(name, data)


def _use_inputs(rng, ctx, path: Path) -> list[str]:
    """run / energy on the seed build, or compile with these as calibration data."""
    use = int(rng.integers(0, 3))
    limit = ["--limit", str(int(rng.integers(1, 5)))] if rng.random() < 0.4 else []
    if use == 0:
        return ["run", str(ctx.seeds / "tiny.build"), "--inputs", str(path), "-o",
                str(ctx.out / "run.npz")] + limit
    if use == 1:
        return ["energy", str(ctx.seeds / "tiny.build"), "--inputs", str(path), "--json",
                str(ctx.out / "energy.json")] + limit
    return ["compile", str(ctx.seeds / "tiny.pt"), "-o", str(ctx.out / "model.build"),
            "--quiet", "--calib", str(path)]


@register("npz-bytes", 2)
def npz_bytes(rng, ctx):
    path = ctx.inp / "inputs.npz"
    path.write_bytes(mutate_bytes(rng, (ctx.seeds / "inputs.npz").read_bytes()))
    return _use_inputs(rng, ctx, path)


@register("npz-crafted", 3)
def npz_crafted(rng, ctx):
    path = ctx.inp / "inputs.npz"
    shape = (4, 5, 1, 6, 6)
    good = npy_header("|u1", shape) + bytes(int(np.prod(shape)))
    kind = int(rng.integers(0, 14))
    if kind == 0:      # deflate bomb: up to 2 GB as int64, streamed through deflate
        lo = 19000 if ctx.quick else 20000      # just above MAX_INPUT_ELEMENTS when quick
        big = (int(rng.integers(lo, 20000 if ctx.quick else 60000)), 100, 1, 6, 6)
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
            with zf.open("inputs.npy", "w", force_zip64=True) as fh:
                fh.write(npy_header("|u1", big))
                left, chunk = int(np.prod(big)), bytes(1 << 20)
                while left:
                    fh.write(chunk[:min(left, len(chunk))])
                    left -= min(left, len(chunk))
    elif kind == 1:    # a header declaring far more than the member holds
        _npz(path, {"inputs.npy": npy_header("<i8", (1 << 40, 5, 1, 6, 6)) + bytes(64)})
    elif kind == 2:
        _npz(path, {"inputs.npy": rng.bytes(int(rng.integers(0, 300)))})
    elif kind == 3:    # object array (a pickle inside)
        import pickle
        _npz(path, {"inputs.npy": npy_header("|O", shape) + pickle.dumps([1] * 720)})
    elif kind == 4:
        dt = _pick(rng, ["<f4", "<f8", "<c8", "<U2", "|V4", "<M8[s]", "|b1", ">i4", "<i2"])
        n = int(np.prod(shape)) * np.dtype(dt).itemsize
        _npz(path, {"inputs.npy": npy_header(dt, shape) + rng.bytes(n)})
    elif kind == 5:    # wrong shapes
        s = _pick(rng, [(4, 5, 6, 6), (0, 5, 1, 6, 6), (4, 0, 1, 6, 6), (4, 5, 2, 6, 6),
                        (), (4,), (2 ** 31, 2 ** 31, 1, 6, 6)])
        _npz(path, {"inputs.npy": npy_header("|u1", s) + bytes(min(int(np.prod(s)), 1000))})
    elif kind == 6:    # out-of-range spike values
        x = rng.integers(-5, 300, shape).astype(np.int16)
        np.savez(path, inputs=x)
    elif kind == 7:    # bad labels
        y = _pick(rng, [np.array([0, 1, 2, 99]), np.array([-1, 0, 0, 0]), np.ones(3),
                        np.zeros((4, 2), int), np.array([0.5] * 4)])
        np.savez(path, inputs=np.zeros(shape, np.uint8), labels=y)
    elif kind == 8:    # extra or duplicate members, names with escapes
        _npz(path, {"inputs.npy": good, _pick(rng, ["evil\x1b[2J.npy", "../x.npy",
                                                     "inputs.npy", "labels"]): good})
    elif kind == 9:    # zip flagged encrypted / unknown method
        _npz(path, {"inputs.npy": good})
        b = bytearray(path.read_bytes())
        cd = b.rfind(b"PK\x01\x02")
        if rng.random() < 0.5:
            b[cd + 8] |= 1
        else:
            b[cd + 10:cd + 12] = struct.pack("<H", 99)
        path.write_bytes(bytes(b))
    elif kind == 10:   # valid: Fortran order / big endian / stored
        x = (rng.random(shape) < 0.4).astype(_pick(rng, [">i2", "<u8", "|b1"]))
        np.savez(path, inputs=np.asfortranarray(x) if rng.random() < .5 else x)
    elif kind == 11:   # valid, many samples, used with --limit
        np.savez_compressed(path, inputs=np.zeros((4000, 5, 1, 6, 6), np.uint8))
    elif kind == 12:   # not a zip at all / empty zip
        if rng.random() < 0.5:
            path.write_bytes(b"")
        else:
            _npz(path, {})
    else:              # header: huge header length, bad dict, negative dims
        _npz(path, {"inputs.npy": _pick(rng, [
            b"\x93NUMPY\x02\x00" + (1 << 31).to_bytes(4, "little"),
            b"\x93NUMPY\x01\x00\x10\x00{'descr': 1}    \n",
            npy_header("|u1", (-4, 5, 1, 6, 6)),
            b"\x93NUMPY\x01\x00\x40\x00" + b"[" * 63 + b"\n"])})
    return _use_inputs(rng, ctx, path)


# ------------------------------------------------------------------ targets (.toml)
def _toml_value(rng) -> str:
    return _pick(rng, ["0", "-1", "-8", "1", "2.5", "nan", "inf", "-inf", "1e400",
                       "99999999999999999999", "true", '"8"', "[1, 2]", "{a = 1}",
                       "[" * 2000 + "]" * 2000, "1e-320", "-0.0", "'x\\u001b'",
                       str(2 ** 63 - 1), "0x10"])


def _target_argv(rng, ctx, path: Path) -> list[str]:
    if rng.random() < 0.6:
        return _compile(ctx, ctx.seeds / "tiny.pt", "--target", str(path))
    return ["energy", str(ctx.seeds / "tiny.build"), "--inputs",
            str(ctx.seeds / "inputs.npz"), "--energy-table", str(path), "--json",
            str(ctx.out / "energy.json")]


@register("toml-edit", 3)
def toml_edit(rng, ctx):
    import re
    lines = (ctx.seeds / "target.toml").read_text().splitlines()
    keyed = [i for i, line in enumerate(lines) if re.match(r"^\w+ = ", line)]
    for _ in range(int(rng.integers(1, 4))):
        i = _pick(rng, keyed)
        key = lines[i].split(" = ")[0]
        op = rng.random()
        if op < 0.75:
            lines[i] = f"{key} = {_toml_value(rng)}"
        elif op < 0.85:
            lines[i] = ""
        elif op < 0.95:
            lines.insert(i, f"{key} = 1")             # duplicate key
        else:
            lines[i] = f'base = "{_pick(rng, ["/etc/passwd", "../../x.toml", "t.toml"])}"'
    path = ctx.inp / "t.toml"
    path.write_text("\n".join(lines) + "\n")
    return _target_argv(rng, ctx, path)


@register("toml-bytes", 1)
def toml_bytes(rng, ctx):
    path = ctx.inp / "t.toml"
    path.write_bytes(mutate_bytes(rng, (ctx.seeds / "target.toml").read_bytes()))
    return _target_argv(rng, ctx, path)


# ------------------------------------------------------------------ special files
@register("special-file", 1)
def special_file(rng, ctx):
    """Each input kind given as a FIFO (a read would block forever), a directory, a link to
    /dev/zero (endless) or /dev/null, or an empty file."""
    ext = _pick(rng, [".pt", ".nir", ".net", ".npz", ".toml"])
    path = ctx.inp / f"x{ext}"
    kind = int(rng.integers(0, 5))
    if kind == 0:
        os.mkfifo(path)
    elif kind == 1:
        path.mkdir()
    elif kind == 2:
        path.symlink_to("/dev/zero")
    elif kind == 3:
        path.symlink_to("/dev/null")
    else:
        path.write_bytes(b"")
    if ext == ".npz":
        return _use_inputs(rng, ctx, path)
    if ext == ".toml":
        return _target_argv(rng, ctx, path)
    return _compile(ctx, path, calib=ext != ".net")


# ------------------------------------------------------------------ checks
def check(case: dict, rec: dict) -> list[str]:
    """The failures of one case's record (empty: the case passed)."""
    bad = []
    if rec.get("status") != "done":
        return [f"{rec.get('status')} ({rec.get('detail', '')})"]
    rc, err = rec["rc"], rec["stderr"]
    if rc not in (0, 2):
        bad.append(f"exit {rc}")
    if "Traceback" in err or "Traceback" in rec["stdout"]:
        bad.append("traceback")
    if rc == 2 and (err.count("\n") != 1 or not err.startswith("snncompile: error: ")):
        bad.append(f"stderr is not one error line ({err.count(chr(10))} lines)")
    # a finished command may warn (compile's fidelity check, a guessed NIR dt) and, when it
    # runs longer than the progress interval, print progress lines: our own one-line
    # warnings and progress only; anything else on stderr (third-party noise) is a failure
    if rc == 0 and any(not line.startswith(("snncompile: warning: ", "snncompile: progress: "))
                       for line in err.splitlines() if line.strip()):
        bad.append("exit 0 with stderr output other than snncompile warnings")
    for v in rec["violations"]:
        bad.append(v)
    if rec["seconds"] > case.get("seconds", CASE_SECONDS):
        bad.append(f"took {rec['seconds']:.1f} s")
    if rec["peak_mb"] > PEAK_RSS_MB:
        bad.append(f"peak RSS {rec['peak_mb']:.0f} MB")
    return bad


# ------------------------------------------------------------------ the runner process
class CaseTimeout(BaseException):
    """Raised by the per-case timer (a BaseException, so the CLI's handler lets it by)."""


class _Inotify:
    """Opens/accesses of files in one folder, seen by the kernel (Linux inotify), so that
    reads done by C libraries (libhdf5) are noticed too."""

    IN_ACCESS, IN_OPEN, IN_NONBLOCK = 0x1, 0x20, 0x800

    def __init__(self, folder: Path):
        self.fd = -1
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            fd = libc.inotify_init1(self.IN_NONBLOCK)
            if fd >= 0 and libc.inotify_add_watch(fd, str(folder).encode(),
                                                  self.IN_ACCESS | self.IN_OPEN) >= 0:
                self.fd = fd
        except (OSError, AttributeError):
            pass

    def events(self) -> list[str]:
        if self.fd < 0:
            return []
        names = []
        while True:
            try:
                data = os.read(self.fd, 65536)
            except BlockingIOError:
                return names
            i = 0
            while i + 16 <= len(data):
                _, mask, _, n = struct.unpack_from("iIII", data, i)
                names.append(data[i + 16:i + 16 + n].rstrip(b"\0").decode() or "<dir>")
                i += 16 + n


def _allowed_read_roots(root: Path) -> list[str]:
    """Where a CLI call may read besides its inputs: the Python installation and the
    package's own files (code, built-in targets), the corpus seeds, and a few files every
    process reads (devices, its own /proc entries, CPU topology that torch queries)."""
    import site
    roots = {sys.prefix, sys.base_prefix, sys.exec_prefix, *site.getsitepackages(),
             str(REPO / "snncompile"), str(REPO / "targets"), str(root / "seeds"),
             str(root / "mpl"), "/dev/null", "/dev/urandom", "/proc/self",
             f"/proc/{os.getpid()}", "/sys/devices/system/cpu", "/sys/fs/cgroup",
             "/proc/cpuinfo", "/proc/meminfo", "/etc/localtime", "/usr/share/zoneinfo",
             "/usr/lib/locale", "/usr/share/matplotlib"}
    out = set()
    for r in roots:
        out.add(os.path.abspath(r))
        out.add(os.path.realpath(r))
    return sorted(out)


def _inside(path: str, roots) -> bool:
    return any(path == r or path.startswith(r.rstrip("/") + "/") for r in roots)


_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
_PATH_EVENTS = {"os.mkdir": (0,), "os.rename": (0, 1), "os.remove": (0,), "os.rmdir": (0,),
                "os.symlink": (1,), "os.link": (1,), "os.truncate": (0,), "os.chmod": (0,),
                "os.chown": (0,), "os.utime": (0,), "shutil.rmtree": (0,),
                "shutil.copyfile": (1,), "shutil.copytree": (1,), "shutil.move": (0, 1)}
_FORBIDDEN = ("os.system", "os.exec", "os.posix_spawn", "os.spawn", "subprocess.Popen",
              "os.fork", "os.forkpty", "ctypes.dlopen", "socket.connect")


class _Audit:
    """sys.addaudithook that records, while a case runs, every read outside the allowed
    roots + the case folder and every write outside the case's out/ folder."""

    def __init__(self, root: Path):
        self.read_roots = _allowed_read_roots(root)
        self.active = False
        self.case_dir = self.out_dir = ""
        self.violations: list[str] = []
        sys.addaudithook(self.hook)

    def start(self, case_dir: str) -> None:
        self.case_dir = os.path.realpath(case_dir)
        self.out_dir = os.path.join(self.case_dir, "out")
        self.violations = []
        self.active = True

    def stop(self) -> list[str]:
        self.active = False
        return self.violations

    @staticmethod
    def _real(p) -> str | None:
        if isinstance(p, int) or p is None:
            return None
        try:
            p = os.fsdecode(p)
        except TypeError:
            return None
        return os.path.realpath(os.path.abspath(p))

    def write(self, p) -> None:
        real = self._real(p)
        if real is not None and not _inside(real, [self.out_dir]) and real != "/dev/null":
            self.violations.append(f"write outside the output: {real}")

    def hook(self, event: str, args) -> None:
        if not self.active:
            return
        self.active = False        # the checks below must not audit themselves
        try:
            if event == "open":
                path, mode, flags = (tuple(args) + (None, None))[:3]
                real = self._real(path)
                if real is None:
                    return
                writing = (isinstance(mode, str) and any(c in mode for c in "wax+")) or \
                    (isinstance(flags, int) and flags & _WRITE_FLAGS)
                if writing:
                    self.write(path)
                elif not _inside(real, [self.case_dir] + self.read_roots):
                    self.violations.append(f"read outside the inputs: {real}")
            elif event in _PATH_EVENTS:
                for i in _PATH_EVENTS[event]:
                    if i < len(args):
                        self.write(args[i])
            elif event.startswith(_FORBIDDEN):
                self.violations.append(f"forbidden call {event}{tuple(args)!r:.120}")
        finally:
            self.active = True


def _peak_rss_reset() -> None:
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
    except OSError:
        pass


def _peak_rss_mb() -> float:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _vm_size() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmSize:"):
            return int(line.split()[1]) * 1024
    return 0


def _warm_up(root: Path, cli) -> None:
    """Each command once on the valid seeds, before any hook is installed: lazy imports
    and one-time probes (e.g. `platform.processor()` running `uname -p`) happen here, not
    inside a case."""
    seeds, warm = root / "seeds", root / "warm"
    warm.mkdir(exist_ok=True)
    calls = [["compile", str(seeds / m), "-o", str(warm / f"{m}.build"), "--quiet"]
             + (["--calib", str(seeds / "calib.npz")] if not m.endswith(".net") else [])
             for m in ("tiny.pt", "tiny.nir", "tiny.net", "sdnn.net")]
    calls += [["run", str(seeds / "tiny.build"), "--inputs", str(seeds / "inputs.npz"), "-o",
               str(warm / "run.npz")],
              ["energy", str(seeds / "tiny.build"), "--inputs", str(seeds / "inputs.npz"),
               "--json", str(warm / "e.json")]]
    saved = os.dup(1), os.dup(2)
    with open(os.devnull, "w") as null:
        os.dup2(null.fileno(), 1)
        os.dup2(null.fileno(), 2)
        try:
            for argv in calls:
                if cli.main(argv) != 0:
                    raise RuntimeError(f"warm-up failed: {argv}")
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])


def run_cases(root: Path, start: int) -> None:
    """Run cases[start:] in this process, appending one JSON record per case (and a
    'started' line before it, so that the parent can name a case that killed us)."""
    import resource
    import warnings

    import snncompile  # noqa: F401
    from snncompile import cli
    import snncompile.pipeline, snncompile.build, snncompile.energy.run  # noqa: E401,F401
    import snncompile.formats.nir.read, snncompile.formats.netx.read  # noqa: E401,F401
    import snncompile.backends.sim, snncompile.backends.reference, snncompile.verify.compare  # noqa: E401,F401

    warnings.resetwarnings()   # what a user would see: the defaults, nothing silenced
    _warm_up(root, cli)
    cases = json.loads((root / "cases.json").read_text())
    limit = _vm_size() + (ADDRESS_SPACE_GB << 30)
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    notify = _Inotify(root / "outside")
    audit = _Audit(root)
    results = open(root / "results.jsonl", "a", buffering=1)

    def on_alarm(signum, frame):
        raise CaseTimeout()
    signal.signal(signal.SIGALRM, on_alarm)
    for case in cases[start:]:
        results.write(json.dumps({"started": case["id"]}) + "\n")
        cap_out = open(Path(case["dir"]) / "stdout.txt", "w+")
        cap_err = open(Path(case["dir"]) / "stderr.txt", "w+")
        sys.stdout.flush()
        sys.stderr.flush()
        saved = os.dup(1), os.dup(2)
        os.dup2(cap_out.fileno(), 1)
        os.dup2(cap_err.fileno(), 2)
        notify.events()
        _peak_rss_reset()
        os.chdir(case["dir"])
        status, detail, rc = "done", "", None
        t0 = time.perf_counter()
        limit_s = case.get("seconds", CASE_SECONDS) * 2
        signal.setitimer(signal.ITIMER_REAL, limit_s)
        audit.start(case["dir"])
        try:
            rc = cli.main(case["argv"])
        except CaseTimeout:
            status, detail = "timeout", f"over {limit_s:.0f} s"
        except SystemExit as exc:       # argparse
            rc = exc.code
        except BaseException as exc:    # noqa: BLE001 - MemoryError etc. outside main
            status, detail = "crash", f"{type(exc).__name__}: {str(exc)[:200]}"
        finally:
            violations = audit.stop()
            signal.setitimer(signal.ITIMER_REAL, 0)
            seconds = time.perf_counter() - t0
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])
        os.chdir(root)
        touched = notify.events()
        violations += [f"read outside the inputs (kernel saw it): {root / 'outside' / n}"
                       for n in sorted(set(touched))]
        if (root / "outside" / "pwned").exists():
            violations.append("code from a pickle ran")
        cap_out.seek(0)
        cap_err.seek(0)
        rec = {"id": case["id"], "status": status, "detail": detail, "rc": rc,
               "seconds": round(seconds, 3), "peak_mb": round(_peak_rss_mb(), 1),
               "stdout": cap_out.read()[-2000:], "stderr": cap_err.read()[-2000:],
               "violations": violations}
        cap_out.close()
        cap_err.close()
        results.write(json.dumps(rec) + "\n")
    results.close()


if __name__ == "__main__":
    if len(sys.argv) != 4 or sys.argv[1] != "run":
        sys.exit("usage: hostile_corpus.py run ROOT START")
    sys.path.insert(0, str(HERE))
    run_cases(Path(sys.argv[2]).resolve(), int(sys.argv[3]))
