"""Hardening fuzz: every file loader either succeeds or raises an `SnnCompileError`
subclass, never another exception, on random bytes and on mutated valid files (truncated,
bytes flipped, a slice overwritten).

Bounded: 50 examples per loader, no deadline, derandomized so that `make test` and CI see
the same examples every run. `SNNCOMPILE_FUZZ_EXAMPLES=2000 make test` explores: that many
random examples per loader, different each run (how the leaks below were found). Valid seed
files are made once per module.

KNOWN_LEAKS lists the inputs that once leaked a raw exception (found by these tests, since
fixed); the `test_known_leak_*` tests replay each one as a strict regression case, and the
fuzz tests tolerate none of them.
"""
from __future__ import annotations

import hashlib
import os
import json
import shutil
import struct
import traceback
import warnings
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hypothesis_profile import examples

import snncompile  # noqa: F401  (installs the Lava import fix)
from snncompile.errors import SnnCompileError
from snncompile.ir import Flatten, FxConv2d, FxDense, FxLIF, FxSigmaDelta, Graph, Input, Output

_DEEP = "SNNCOMPILE_FUZZ_EXAMPLES" in os.environ
FUZZ = settings(max_examples=int(os.environ.get("SNNCOMPILE_FUZZ_EXAMPLES", examples(50))),
                deadline=None,
                database=None, derandomize=not _DEEP,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow])


# ------------------------------------------------------------------ mutations
@st.composite
def mutated(draw, seed: bytes):
    """Random bytes, or `seed` truncated, with bytes flipped or with a slice overwritten."""
    kind = draw(st.sampled_from(["random", "truncate", "flip", "splice"]))
    if kind == "random":
        return draw(st.binary(min_size=0, max_size=512))
    data = bytearray(seed)
    if kind == "truncate":
        return bytes(data[:draw(st.integers(0, max(len(data) - 1, 0)))])
    if kind == "flip":
        for _ in range(draw(st.integers(1, 8))):
            i = draw(st.integers(0, len(data) - 1))
            data[i] ^= draw(st.integers(1, 255))
        return bytes(data)
    start = draw(st.integers(0, len(data) - 1))
    chunk = draw(st.binary(min_size=1, max_size=64))
    data[start:start + len(chunk)] = chunk
    return bytes(data)


# (file, function of the innermost snncompile frame, exception class name) -> bug
KNOWN_LEAKS = {
    ("checkpoint.py", "load_checkpoint", "IndexError"):
        "snncompile/nn/checkpoint.py:45 does not catch IndexError from torch.load's "
        "weights_only unpickler (file b'a')",
    ("checkpoint.py", "load_checkpoint", "error"):
        "snncompile/nn/checkpoint.py:45 does not catch struct.error from torch.load's "
        "weights_only unpickler (file b'M\\xb0')",
    ("graph.py", "load_npz", "error"):
        "snncompile/ir/graph.py:235 load_npz does not catch zlib.error (corrupt deflate data)",
    ("graph.py", "load_npz", "NotImplementedError"):
        "snncompile/ir/graph.py:235 load_npz does not catch NotImplementedError (zip member "
        "with an unknown compression method or zip version)",
    ("graph.py", "load_npz", "RuntimeError"):
        "snncompile/ir/graph.py:235 load_npz does not catch RuntimeError (zip member flagged "
        "encrypted)",
    ("read.py", "_conv2d", "ValueError"):
        "snncompile/formats/nir/read.py:320 np.broadcast_to of a conv bias to a huge "
        "output shape raises ValueError ('iterator is too large'; conv padding 2**61)",
    ("build.py", "load", "JSONDecodeError"):
        "snncompile/build.py:98 Build.load parses report.json without catching "
        "JSONDecodeError",
    ("build.py", "load", "UnicodeDecodeError"):
        "snncompile/build.py:98/101 Build.load reads report.json/report.md without catching "
        "UnicodeDecodeError",
}


def _leak_site(exc: BaseException) -> tuple[str, str, str]:
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if "snncompile" in f.filename
              and "/tests/" not in f.filename and not f.name.startswith("<")]
    last = frames[-1] if frames else None
    return (Path(last.filename).name if last else "?", last.name if last else "?",
            type(exc).__name__)


def _expect_clean(load, *args, tolerate_known: bool = False):
    """Call a loader; only success or SnnCompileError are acceptable (and, unless told
    otherwise, the KNOWN_LEAKS of other modules)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            load(*args)
        except SnnCompileError:
            pass
        except Exception as exc:  # noqa: BLE001 - that is the finding
            if tolerate_known and _leak_site(exc) in KNOWN_LEAKS:
                return
            raise AssertionError(f"{getattr(load, '__qualname__', load)} leaked "
                                 f"{type(exc).__name__} at {_leak_site(exc)[:2]}: "
                                 f"{str(exc)[:300]}") from exc


# ------------------------------------------------------------------ seed files
def _fixed_graph() -> Graph:
    rng = np.random.default_rng(0)
    return Graph.sequential([
        Input("in", shape=(1, 6, 6)),
        FxConv2d("c1", weight=rng.integers(-50, 50, (2, 1, 3, 3)).astype(np.int32),
                 padding=(1, 1)),
        FxLIF("l1", shape=(2, 6, 6), du=200, dv=100, vth=40),
        Flatten("f"),
        FxDense("d2", weight=(rng.integers(-60, 60, (3, 72)) * 2).astype(np.int32)),
        FxLIF("l2", shape=(3,), du=100, dv=50, vth=60,
              bias_mant=np.array([64, 0, -64], np.int32), bias_exp=6),
        Output("out")], meta={"source": "fuzz"})


def _sdnn_graph() -> Graph:
    """Delta encoder, conv and dense sigma-delta layers, sigma readout (a netx SDNN seed)."""
    rng = np.random.default_rng(2)
    return Graph.sequential([
        Input("in", shape=(1, 6, 6), encoding="graded", bits=8),
        FxSigmaDelta("enc", shape=(1, 6, 6), role="delta", vth=4),
        FxConv2d("c1", weight=rng.integers(-50, 50, (2, 1, 3, 3)).astype(np.int32),
                 padding=(1, 1), num_message_bits=16),
        FxSigmaDelta("s1", shape=(2, 6, 6), vth=10,
                     bias_mant=rng.integers(-3, 3, (2, 6, 6)).astype(np.int32)),
        Flatten("f"),
        FxDense("d2", weight=(rng.integers(-60, 60, (3, 72)) * 2).astype(np.int32),
                num_message_bits=16),
        FxSigmaDelta("out", shape=(3,), role="sigma"),
        Output("o")], meta={"source": "fuzz"})


@pytest.fixture(scope="module")
def seeds(tmp_path_factory):
    from conftest import make_tiny

    from snncompile.data import save_inputs
    from snncompile.formats.netx.write import export_netx
    from snncompile.formats.nir.write import write_nir
    from snncompile.frontends import import_checkpoint
    from snncompile.pipeline import compile_model

    root = tmp_path_factory.mktemp("seeds")
    make_tiny(root / "tiny.pt")
    write_nir(import_checkpoint(root / "tiny.pt"), root / "tiny.nir")
    export_netx(_fixed_graph(), root / "tiny.net")
    export_netx(_sdnn_graph(), root / "sdnn.net")
    (root / "graph").mkdir()
    _fixed_graph().save(root / "graph")
    x = (np.random.default_rng(1).random((4, 5, 1, 6, 6)) < 0.3).astype(np.uint8)
    save_inputs(root / "inputs.npz", x, np.array([0, 1, 2, 3]))
    compile_model(root / "tiny.pt", "loihi2", calib=x).save(root / "tiny.build")
    return root


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz")


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _read(root: Path, name: str) -> bytes:
    return (root / name).read_bytes()


# ------------------------------------------------------------------ single files
def _loader(which: str):
    if which == "pt":
        from snncompile.nn import load_checkpoint
        return load_checkpoint
    if which == "nir":
        from snncompile.formats.nir.read import import_nir
        return import_nir
    from snncompile.formats.netx.read import import_netx
    return import_netx


@pytest.mark.parametrize("seed", ["tiny.pt", "tiny.nir", "tiny.net", "sdnn.net"])
def test_fuzz_model_files(seeds, work, seed):
    ext = seed.rsplit(".", 1)[1]
    load = _loader(ext)

    @FUZZ
    @given(data=mutated(_read(seeds, seed)))
    def run(data):
        _expect_clean(load, _write(work / f"f.{ext}", data))
    run()


def test_fuzz_inputs(seeds, work):
    from snncompile.data import load_inputs

    inp = Input("in", shape=(1, 6, 6))

    @FUZZ
    @given(data=mutated(_read(seeds, "inputs.npz")))
    def run(data):
        _expect_clean(load_inputs, _write(work / "f.npz", data), inp, 4)
    run()


# ------------------------------------------------------------------ directories
def _mutate_dir(src: Path, dst: Path, name: str, data: bytes) -> Path:
    if dst.exists():
        shutil.rmtree(dst)
    shutil.copytree(src, dst)
    (dst / name).write_bytes(data)
    return dst


@pytest.mark.parametrize("member", ["graph.json", "arrays.npz"])
def test_fuzz_graph_load(seeds, work, member):
    @FUZZ
    @given(data=mutated(_read(seeds / "graph", member)))
    def run(data):
        _expect_clean(Graph.load, _mutate_dir(seeds / "graph", work / "g", member, data))
    run()


def _reseal(build: Path) -> None:
    """Recompute the manifest checksums: a hostile but self-consistent build directory."""
    manifest = json.loads((build / "manifest.json").read_text())
    manifest["files"] = {name: hashlib.sha256((build / name).read_bytes()).hexdigest()
                         for name in manifest["files"]}
    (build / "manifest.json").write_text(json.dumps(manifest))


BUILD_MEMBERS = ["manifest.json", "graph.json", "arrays.npz", "report.json", "target.toml",
                 "float/graph.json"]


@pytest.mark.parametrize("member", BUILD_MEMBERS)
def test_fuzz_build_load(seeds, work, member):
    """Mutations caught by the checksum check (the manifest is left as written)."""
    from snncompile.build import Build

    @FUZZ
    @given(data=mutated(_read(seeds / "tiny.build", member)))
    def run(data):
        _expect_clean(Build.load, _mutate_dir(seeds / "tiny.build", work / "b", member, data))
    run()


@pytest.mark.parametrize("member", [m for m in BUILD_MEMBERS if m != "manifest.json"]
                         + ["report.md", "float/arrays.npz"])
def test_fuzz_build_load_resealed(seeds, work, member):
    """The same mutations with checksums recomputed, so they reach the parsers."""
    from snncompile.build import Build

    @FUZZ
    @given(data=mutated(_read(seeds / "tiny.build", member)))
    def run(data):
        path = _mutate_dir(seeds / "tiny.build", work / "b", member, data)
        _reseal(path)
        _expect_clean(Build.load, path)
    run()


# ------------------------------------------------------------------ known leaks, exact inputs
def _npz_bytes(tmp_path) -> bytes:
    from snncompile.data import save_inputs

    save_inputs(tmp_path / "v.npz", np.zeros((2, 3, 1, 2, 2), np.uint8))
    return (tmp_path / "v.npz").read_bytes()


def _npz_deflate_flipped(raw: bytes) -> bytes:
    b = bytearray(raw)
    name_len, extra_len = struct.unpack("<HH", b[26:30])
    b[30 + name_len + extra_len] ^= 0xFF          # first byte of the deflate stream
    return bytes(b)


def _npz_central(raw: bytes, offset: int, value: bytes) -> bytes:
    b = bytearray(raw)
    cd = b.rfind(b"PK\x01\x02")                    # central directory entry
    b[cd + offset:cd + offset + len(value)] = value
    return bytes(b)


NPZ_CASES = {
    "zlib.error": lambda raw: _npz_deflate_flipped(raw),
    "NotImplementedError": lambda raw: _npz_central(raw, 10, struct.pack("<H", 99)),
    "RuntimeError": lambda raw: _npz_central(raw, 8, b"\x01"),   # 'encrypted' flag
}


def _known(site):
    """Formerly leaking inputs, now fixed: kept as strict regression cases."""
    assert site in KNOWN_LEAKS
    return pytest.mark.regression


@pytest.mark.parametrize("data", [
    pytest.param(b"a", marks=_known(("checkpoint.py", "load_checkpoint", "IndexError"))),
    pytest.param(b"M\xb0", marks=_known(("checkpoint.py", "load_checkpoint", "error")))])
def test_known_leak_checkpoint(tmp_path, data):
    from snncompile.nn import load_checkpoint

    _expect_clean(load_checkpoint, _write(tmp_path / "x.pt", data), tolerate_known=False)


@pytest.mark.parametrize("case, site", [
    ("zlib.error", ("graph.py", "load_npz", "error")),
    ("NotImplementedError", ("graph.py", "load_npz", "NotImplementedError")),
    ("RuntimeError", ("graph.py", "load_npz", "RuntimeError"))])
def test_known_leak_npz(tmp_path, request, case, site):
    from snncompile.data import load_inputs

    request.applymarker(_known(site))
    bad = _write(tmp_path / "x.npz", NPZ_CASES[case](_npz_bytes(tmp_path)))
    _expect_clean(load_inputs, bad, Input("in", shape=(1, 2, 2)), tolerate_known=False)


def test_known_leak_nir_huge_padding(seeds, tmp_path, request):
    import h5py

    from snncompile.formats.nir.read import import_nir

    request.applymarker(_known(("read.py", "_conv2d", "ValueError")))
    path = tmp_path / "x.nir"
    shutil.copyfile(seeds / "tiny.nir", path)
    with h5py.File(path, "a") as f:
        f["node/nodes/conv1/padding"][...] = np.array([2 ** 61, 1])
    _expect_clean(import_nir, path, tolerate_known=False)


@pytest.mark.parametrize("member, data, site", [
    ("report.json", b"", ("build.py", "load", "JSONDecodeError")),
    ("report.md", b"\x80", ("build.py", "load", "UnicodeDecodeError"))])
def test_known_leak_build(seeds, tmp_path, request, member, data, site):
    from snncompile.build import Build

    request.applymarker(_known(site))
    path = _mutate_dir(seeds / "tiny.build", tmp_path / "b", member, data)
    _reseal(path)
    _expect_clean(Build.load, path, tolerate_known=False)


# ------------------------------------------------------------------ netx structure fuzz
_VALUES = st.one_of(
    st.integers(-2**40, 2**40),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.binary(max_size=12).map(lambda b: b.replace(b"\x00", b"x")),
    st.sampled_from([b"dense", b"conv", b"input", b"flatten", b"pool", b"CUBA", b"SDNN"]),
    st.lists(st.integers(-300, 300), min_size=0, max_size=6).map(np.array),
    st.tuples(st.integers(1, 4), st.integers(1, 4), st.integers(-300, 300)).map(
        lambda t: np.full(t[:2], t[2])),
    st.tuples(st.integers(1, 3), st.integers(1, 3), st.integers(1, 3), st.integers(1, 3)).map(
        lambda t: np.ones(t, np.float32)),
)
_KEYS = ["type", "shape", "weight", "bias", "delay", "stride", "padding", "dilation",
         "groups", "neuron/type", "neuron/iDecay", "neuron/vDecay", "neuron/vThMant",
         "neuron/refDelay", "neuron/gradedSpike", "neuron/messageBits", "neuron",
         "neuron/activation", "neuron/sigma_output"]


def _blocked(group, key: str) -> bool:
    """'neuron/x' cannot be created where 'neuron' is a dataset."""
    head = key.split("/")[0]
    return "/" in key and head in group and not hasattr(group[head], "keys")


@pytest.mark.parametrize("seed", ["tiny.net", "sdnn.net"])
def test_fuzz_netx_structure(seeds, work, seed):
    """Valid HDF5, hostile contents: keys deleted or replaced by values of any type (a CUBA
    and a sigma-delta seed)."""
    import h5py

    from snncompile.formats.netx.read import import_netx

    with h5py.File(seeds / seed, "r") as f:
        n_layers = len(f["layer"])

    edits = st.lists(st.tuples(st.integers(0, n_layers), st.sampled_from(_KEYS),
                               st.one_of(st.none(), _VALUES)), min_size=1, max_size=4)

    @FUZZ
    @given(edits=edits)
    def run(edits):
        path = work / "s.net"
        shutil.copyfile(seeds / seed, path)
        with h5py.File(path, "a") as f:
            for index, key, value in edits:
                group = f.require_group(f"layer/{index}")
                if key in group:
                    del group[key]
                if value is not None and not _blocked(group, key):
                    group.create_dataset(key, data=value)
        _expect_clean(import_netx, path, tolerate_known=False)
    run()


@pytest.mark.regression
@pytest.mark.parametrize("layer, change, match", [
    (0, {"kernel": 9}, "does not fit the 6x6 input"),     # once: torch RuntimeError leaked
    (0, {"out": -3}, "'out' = -3"),
    (0, {"stride": 0}, "'stride' = 0"),
    (0, {"groups": 2}, "groups 2 must divide"),
    (0, {"padding": 1.5}, "'padding' = 1.5"),
    (2, {"kernel": 0}, "'kernel' = 0"),
    (4, {"out": 1024}, "weights exceed"),               # with a 600x600 input, below
])
def test_bad_layer_configs_are_one_clear_error(tmp_path, layer, change, match):
    """Checkpoint configs with impossible layer sizes (found by the byte-mutation fuzz:
    a conv kernel larger than its input made torch raise RuntimeError) are refused with the
    layer, field and value."""
    import copy

    import torch

    from conftest import TINY_CONFIG
    from snncompile.errors import SnnCompileError
    from snncompile.nn import load_checkpoint
    from snncompile.nn.checkpoint import FORMAT, VERSION

    config = copy.deepcopy(TINY_CONFIG)
    config["layers"][layer].update(change)
    if match == "weights exceed":
        config["input"]["shape"] = [1, 600, 600]
    path = tmp_path / "bad.pt"
    torch.save({"format": FORMAT, "version": VERSION, "config": config, "state_dict": {}},
               path)
    with pytest.raises(SnnCompileError, match=match):
        load_checkpoint(path)
