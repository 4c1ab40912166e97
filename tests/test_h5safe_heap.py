"""Variable-length strings whose records in the file claim gigabytes (hostile corpus case
267, kind nir-bytes: a flipped byte in the length of a string of NIR's `node/edges`) are
refused from the file's bytes before libhdf5 reads them: one line, exit 2, and the
process stays small (libhdf5 used to allocate the claimed 2.2 GB first). The peak RSS is
measured in a subprocess (resource.getrusage of the children) against the same CLI
compiling the intact file."""
from __future__ import annotations

import os
import resource
import subprocess
import sys
from pathlib import Path

import h5py
import pytest

from snncompile.errors import InputFileError
from snncompile.formats.h5safe import MAX_VLEN_BYTES, check_hdf5, read_hdf5

REPO = Path(__file__).resolve().parent.parent
RSS_MARGIN_MB = 300


@pytest.fixture(scope="module")
def nir_file(tmp_path_factory):
    from conftest import make_tiny

    from snncompile.formats.nir.write import write_nir
    from snncompile.frontends import import_checkpoint

    root = tmp_path_factory.mktemp("heap")
    make_tiny(root / "tiny.pt")
    write_nir(import_checkpoint(root / "tiny.pt"), root / "tiny.nir")
    return root / "tiny.nir"


def _edges_record(path: Path) -> int:
    """File offset of the first string record of `node/edges` (contiguous storage)."""
    with h5py.File(path, "r") as f:
        ds = f["node/edges"].id
        assert ds.get_create_plist().get_layout() == h5py.h5d.CONTIGUOUS
        return ds.get_offset()


def _corrupt(src: Path, dst: Path, at_length: bytes | None = None,
             at_heap: int | None = None) -> Path:
    """A copy of `src` with the first edge string's length (4 bytes) or heap collection
    size (the 8 bytes after 'GCOL' + version + 3 reserved bytes) overwritten."""
    data = bytearray(src.read_bytes())
    off = _edges_record(src)
    if at_length is not None:
        data[off:off + 4] = at_length
    if at_heap is not None:
        addr = int.from_bytes(data[off + 4:off + 12], "little")
        assert data[addr:addr + 4] == b"GCOL"
        data[addr + 8:addr + 16] = at_heap.to_bytes(8, "little")
    dst.write_bytes(bytes(data))
    return dst


def test_huge_string_length_is_refused(nir_file, tmp_path):
    bad = _corrupt(nir_file, tmp_path / "bad.nir", at_length=b"\x05\x00\x00\x86")
    with pytest.raises(InputFileError, match=r"/node/edges: corrupt variable-length "
                       r"strings \(a string of 2248146949 bytes \(limit 1048576\)\)"):
        check_hdf5(bad)


def test_heap_collection_past_the_file_is_refused(nir_file, tmp_path):
    bad = _corrupt(nir_file, tmp_path / "bad.nir", at_heap=1 << 33)
    with pytest.raises(InputFileError, match="heap collection of 8589934592 bytes"):
        check_hdf5(bad)


def test_intact_strings_read_as_h5py_reads_them(nir_file):
    tree = read_hdf5(nir_file)
    with h5py.File(nir_file, "r") as f:
        assert (tree["node"]["edges"] == f["node/edges"][()]).all()
        assert tree["node"]["type"] == f["node/type"][()] == b"NIRGraph"
        assert tree["version"] == f["version"][()]
    assert MAX_VLEN_BYTES >= 1 << 16


def _peak_mb(argv: list[str]) -> tuple[int, str, float]:
    """(exit status, stderr, peak RSS in MB) of the CLI run in a fresh child (each call
    in its own grandchild, so that getrusage(RUSAGE_CHILDREN) sees only that one)."""
    code = ("import resource, subprocess, sys; p = subprocess.run(sys.argv[1:], "
            "capture_output=True, text=True); print(p.returncode); "
            "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); "
            "sys.stdout.write(p.stderr)")
    env = dict(os.environ, PYTHONPATH=str(REPO), SNNCOMPILE_PROGRESS="0")
    out = subprocess.run([sys.executable, "-c", code, sys.executable, "-m", "snncompile.cli",
                          *argv], capture_output=True, text=True, env=env, check=True).stdout
    rc, kb, err = out.split("\n", 2)
    return int(rc), err, int(kb) / 1024


def test_refusal_stays_small(nir_file, tmp_path):
    """The CLI on the case-267 corruption: one error line, exit 2, peak RSS within
    RSS_MARGIN_MB of the same CLI compiling the intact file (it peaked at 2.7 GB)."""
    assert resource.RLIMIT_AS is not None
    bad = _corrupt(nir_file, tmp_path / "bad.nir", at_length=b"\x05\x00\x00\x86")
    rc, err, peak = _peak_mb(["compile", str(bad), "-o", str(tmp_path / "b.build"),
                              "--quiet", "--no-calib"])
    assert rc == 2, err
    lines = [x for x in err.splitlines() if x.strip()]
    assert len(lines) == 1 and lines[0].startswith("snncompile: error:"), err
    assert "corrupt variable-length strings" in lines[0]
    rc0, err0, base = _peak_mb(["compile", str(nir_file), "-o", str(tmp_path / "ok.build"),
                                "--quiet", "--no-calib"])
    assert rc0 == 0, err0
    assert peak < base + RSS_MARGIN_MB, f"refusal peaked at {peak:.0f} MB, intact {base:.0f}"
