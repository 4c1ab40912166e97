"""HDF5 model files (netx .net, NIR .nir) may only use data stored inside themselves:
external storage, external and soft links, virtual datasets, plugin filters, references and
oversize declared datasets are refused before anything is read, with one line naming the
object. Files are written with h5py (the library netx and NIR use)."""
from __future__ import annotations

import shutil

import h5py
import numpy as np
import pytest

import snncompile  # noqa: F401
from snncompile.cli import main
from snncompile.errors import InputFileError
from snncompile.formats.h5safe import MAX_DATASET_BYTES, MAX_DEPTH, check_hdf5
from snncompile.ir import FxDense, FxLIF, Graph, Input, Output

SECRET = b"root:x:0:0:SECRET-CANARY:/root:/bin/bash\n" * 4


def _graph() -> Graph:
    rng = np.random.default_rng(0)
    return Graph.sequential([
        Input("in", shape=(8,)),
        FxDense("d1", weight=(rng.integers(-60, 60, (4, 8)) * 2).astype(np.int32)),
        FxLIF("l1", shape=(4,), du=100, dv=50, vth=60),
        Output("out")])


@pytest.fixture(scope="module")
def seeds(tmp_path_factory):
    from conftest import make_tiny

    from snncompile.formats.netx.write import export_netx
    from snncompile.formats.nir.write import write_nir
    from snncompile.frontends import import_checkpoint

    root = tmp_path_factory.mktemp("h5seeds")
    export_netx(_graph(), root / "net.net")
    make_tiny(root / "tiny.pt")
    write_nir(import_checkpoint(root / "tiny.pt"), root / "tiny.nir")
    (root / "secret.txt").write_bytes(SECRET)
    return root


def _weight_key(f, kind):
    return "layer/1/weight" if kind == "net" else "node/nodes/fc2/weight"


def _attack(path, kind, attack, secret):
    """Replace the first weight dataset of `path` by `attack`."""
    with h5py.File(path, "a") as f:
        key = _weight_key(f, kind)
        old = f[key]
        shape, dtype = old.shape, old.dtype
        del f[key]
        if attack == "external":
            n = int(np.prod(shape)) * dtype.itemsize
            f.create_dataset(key, shape=shape, dtype=dtype,
                             external=[(str(secret), 0, n)])
        elif attack == "external_link":
            f[key] = h5py.ExternalLink(str(secret.with_suffix(".h5")), "/w")
        elif attack == "soft_link":
            f[key] = h5py.SoftLink("/elsewhere")
        elif attack == "virtual":
            layout = h5py.VirtualLayout(shape=shape, dtype=dtype)
            layout[...] = h5py.VirtualSource(str(secret.with_suffix(".h5")), "/w",
                                             shape=shape)
            f.create_virtual_dataset(key, layout)
        elif attack == "huge":   # 2 GiB declared, a few hundred bytes on disk
            f.create_dataset(key, shape=(1 << 15, 1 << 13), dtype="f8", chunks=(64, 64),
                             compression="gzip")
        elif attack == "reference":
            f.create_dataset(key, data=np.array([f.ref], dtype=h5py.ref_dtype))
        elif attack == "plugin":
            dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
            dcpl.set_chunk(tuple(shape))
            dcpl.set_filter(32001, h5py.h5z.FLAG_OPTIONAL)   # blosc: a plugin library
            space = h5py.h5s.create_simple(tuple(shape))
            h5py.h5d.create(f.id, key.encode(), h5py.h5t.py_create(dtype), space, dcpl=dcpl)


ATTACKS = {"external": "external storage", "external_link": "external link",
           "soft_link": "soft link", "virtual": "virtual dataset",
           "huge": "exceeds 268435456 bytes", "reference": "references",
           "plugin": "filter 32001"}


@pytest.fixture(scope="module")
def secret_h5(seeds):
    with h5py.File(seeds / "secret.h5", "w") as f:
        f.create_dataset("w", data=np.frombuffer(SECRET[:32], np.uint8).astype(np.float32))
    return seeds / "secret.txt"


@pytest.mark.parametrize("kind", ["net", "nir"])
@pytest.mark.parametrize("attack", sorted(ATTACKS))
def test_hdf5_attacks_are_refused_by_the_cli(seeds, secret_h5, tmp_path, capsys, kind,
                                             attack):
    """Each attack on a valid netx or NIR file: exit 2, one line naming the object and the
    attack, no build written (before the fix, external storage compiled with exit 0 and put
    the secret's bytes into arrays.npz)."""
    src = seeds / ("net.net" if kind == "net" else "tiny.nir")
    path = tmp_path / src.name
    shutil.copyfile(src, path)
    _attack(path, kind, attack, secret_h5)
    out = tmp_path / "b.build"
    rc = main(["compile", str(path), "-o", str(out), "--quiet", "--calib",
               str(seeds / "calib.npz")] if kind == "nir" else
              ["compile", str(path), "-o", str(out), "--quiet"])
    err = capsys.readouterr().err
    assert rc == 2, err
    assert err.count("\n") == 1 and ATTACKS[attack] in err and "weight" in err, err
    assert not out.exists()


@pytest.fixture(scope="module", autouse=True)
def _calib(seeds):
    from snncompile.data import save_inputs
    x = (np.random.default_rng(1).random((4, 5, 1, 6, 6)) < 0.3).astype(np.uint8)
    save_inputs(seeds / "calib.npz", x)


def test_the_seeds_themselves_compile(seeds, tmp_path, capsys):
    """The same files without an attack are accepted (the checks are not just refusing)."""
    check_hdf5(seeds / "net.net")
    check_hdf5(seeds / "tiny.nir")
    assert main(["compile", str(seeds / "net.net"), "-o", str(tmp_path / "a"),
                 "--quiet"]) == 0
    assert main(["compile", str(seeds / "tiny.nir"), "-o", str(tmp_path / "b"), "--quiet",
                 "--calib", str(seeds / "calib.npz")]) == 0


def test_compressed_seed_and_limits(tmp_path):
    """Built-in filters pass; nesting deeper than MAX_DEPTH and a dataset just above the
    byte limit are refused."""
    path = tmp_path / "ok.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("a", data=np.arange(100), compression="gzip", shuffle=True,
                         fletcher32=True)
        f.create_dataset("s", data=b"dense")
        f.create_dataset("v", data="text", dtype=h5py.string_dtype())
    check_hdf5(path)
    with h5py.File(path, "a") as f:
        f.create_group("/".join(["g"] * (MAX_DEPTH + 2)))
    with pytest.raises(InputFileError, match="nested deeper"):
        check_hdf5(path)
    path = tmp_path / "big.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("x", shape=(MAX_DATASET_BYTES + 1,), dtype="u1", chunks=(1024,),
                         compression="gzip")
    with pytest.raises(InputFileError, match=r"x: declared shape"):
        check_hdf5(path)


def test_not_hdf5_and_missing(tmp_path):
    (tmp_path / "x.net").write_bytes(b"not hdf5")
    with pytest.raises(InputFileError, match="not an HDF5 file"):
        check_hdf5(tmp_path / "x.net")
    with pytest.raises(InputFileError, match="not found"):
        check_hdf5(tmp_path / "y.net")


@pytest.mark.parametrize("key, value, match", [
    ("node/nodes/input/shape", b"dense", r"NIR node 'input' \(Input\): malformed parameter"),
    ("node/nodes/conv1/groups", np.inf, "NIR node .conv1. \\(Conv2d\\): malformed"),
    ("node/metadata/dt", b"Conv2d", "metadata dt"),
])
def test_nir_values_of_the_wrong_type_are_one_line(seeds, tmp_path, key, value, match):
    """Valid HDF5, hostile NIR contents (found by the long hostile corpus: exit 3 with
    ValueError / OverflowError)."""
    from snncompile.formats.nir.read import import_nir

    path = tmp_path / "x.nir"
    shutil.copyfile(seeds / "tiny.nir", path)
    with h5py.File(path, "a") as f:
        del f[key]
        f.create_dataset(key, data=value)
    with pytest.raises(InputFileError, match=match):
        import_nir(path)
