"""Input .npz files are untrusted: sizes come from the .npy headers and are checked before
anything is decompressed, `--limit` samples are all that is decompressed and cast, and a
member that is not a plain integer .npy array is one line naming the member."""
from __future__ import annotations

import tracemalloc
import zipfile

import numpy as np
import pytest

from snncompile.cli import main
from snncompile.data import MAX_INPUT_ELEMENTS, load_inputs, save_inputs
from snncompile.errors import InputFileError
from snncompile.ir import Input

INP = Input("in", shape=(1, 6, 6))


def _npy_header(descr: str, shape, fortran=False) -> bytes:
    head = repr({"descr": descr, "fortran_order": fortran, "shape": tuple(shape)})
    head = head.encode("latin-1")
    pad = 64 - (10 + len(head) + 1) % 64
    head += b" " * pad + b"\n"
    return b"\x93NUMPY\x01\x00" + len(head).to_bytes(2, "little") + head


def _bomb(path, samples: int, steps: int = 100, labels: bool = False):
    """A valid .npz whose 'inputs' are `samples` x steps x 1x6x6 zeros (uint8), streamed
    through deflate: a few hundred KB on disk."""
    shape = (samples, steps, 1, 6, 6)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        with zf.open("inputs.npy", "w", force_zip64=True) as fh:
            fh.write(_npy_header("|u1", shape))
            chunk = bytes(1 << 20)
            left = int(np.prod(shape))
            while left:
                fh.write(chunk[:min(left, len(chunk))])
                left -= min(left, len(chunk))
        if labels:
            zf.writestr("labels.npy", _npy_header("<i8", (samples,)) + bytes(8 * samples))
    return path


@pytest.fixture(scope="module")
def bomb(tmp_path_factory):
    """108 M values (> MAX_INPUT_ELEMENTS) in ~110 KB."""
    return _bomb(tmp_path_factory.mktemp("npz") / "bomb.npz", 30000, labels=True)


def test_deflate_bomb_is_refused_from_its_header(bomb):
    assert bomb.stat().st_size < 1 << 20 and 30000 * 3600 > MAX_INPUT_ELEMENTS
    tracemalloc.start()
    try:
        with pytest.raises(InputFileError, match=r"exceeds 67,108,864 values; use --limit"):
            load_inputs(bomb, INP, 4)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 4 << 20, peak          # nothing near the 108 MB it declares (or 864 MB)


def test_limit_is_applied_before_decompression_and_cast(bomb):
    tracemalloc.start()
    try:
        x, y = load_inputs(bomb, INP, 4, limit=3)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert x.shape == (3, 100, 1, 6, 6) and x.dtype == np.int64 and y.tolist() == [0, 0, 0]
    assert peak < 4 << 20, peak


def test_cli_run_with_bomb_is_one_line(bomb, tiny_files, tmp_path, capsys):
    ckpt, inputs, _, _ = tiny_files
    assert main(["compile", str(ckpt), "-o", str(tmp_path / "b"), "--calib", str(inputs),
                 "--quiet"]) == 0
    capsys.readouterr()
    assert main(["run", str(tmp_path / "b"), "--inputs", str(bomb)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "use --limit" in err
    assert main(["run", str(tmp_path / "b"), "--inputs", str(bomb), "--limit", "2"]) == 0


def _npz(path, **members: bytes):
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


@pytest.mark.parametrize("member, match", [
    (b"not an npy file at all", "'inputs' is not an .npy array \\(no npy magic\\)"),
    (_npy_header("|O", (2, 3, 1, 6, 6)) + b"\x80\x04N.", "object, structured and pickled"),
    (_npy_header("<f4", (2, 3, 1, 6, 6)) + bytes(4 * 216), "dtype float32; it must hold"),
    (_npy_header("<c8", (2, 3, 1, 6, 6)) + bytes(8 * 216), "dtype complex64"),
    (_npy_header("<U3", (2, 3, 1, 6, 6)) + bytes(12 * 216), "dtype <U3"),
    (_npy_header("|u1", (2, 3, 1, 6, 6)) + bytes(100), "declares shape"),
    (_npy_header("|u1", (-1, 3, 1, 6, 6)), "invalid shape"),
    (b"\x93NUMPY\x01\x00\xff\xff{", "truncated .npy header"),
    (b"\x93NUMPY\x09\x00", "unsupported .npy version 9"),
    (_npy_header("|u1", (2, 3, 1, 6, 6))[:-20] + b"}" * 19 + b"\n" + bytes(216),
     "malformed .npy header"),
])
def test_bad_members_are_one_line(tmp_path, member, match):
    path = _npz(tmp_path / "x.npz", **{"inputs.npy": member})
    with pytest.raises(InputFileError, match=match) as info:
        load_inputs(path, INP, 4)
    assert "\n" not in str(info.value)


def test_names_labels_and_special_files(tmp_path):
    x = np.zeros((2, 3, 1, 6, 6), np.uint8)
    save_inputs(tmp_path / "ok.npz", x, np.array([1, 2]))
    got, y = load_inputs(tmp_path / "ok.npz", INP, 4)
    assert got.shape == x.shape and y.tolist() == [1, 2]
    path = _npz(tmp_path / "u.npz", **{"inputs.npy": b"", "evil\x1b[31m.npy": b""})
    with pytest.raises(InputFileError, match=r"unexpected arrays \['evil\\\\x1b"):
        load_inputs(path, INP, 4)
    save_inputs(tmp_path / "l.npz", x, np.array([1.0, 2.0]))
    with pytest.raises(InputFileError, match="'labels' must be integers"):
        load_inputs(tmp_path / "l.npz", INP, 4)
    save_inputs(tmp_path / "r.npz", x, np.array([1, 9]))
    with pytest.raises(InputFileError, match=r"'labels' span \[1, 9\]"):
        load_inputs(tmp_path / "r.npz", INP, 4)
    (tmp_path / "d.npz").mkdir()
    with pytest.raises(InputFileError, match="not a regular file"):
        load_inputs(tmp_path / "d.npz", INP, 4)


def test_fortran_order_and_big_endian_arrays_read_like_numpy(tmp_path):
    rng = np.random.default_rng(0)
    x = np.asfortranarray((rng.random((5, 4, 1, 6, 6)) < 0.5).astype(">i2"))
    np.savez(tmp_path / "f.npz", inputs=x)
    got, _ = load_inputs(tmp_path / "f.npz", INP, limit=2)
    assert np.array_equal(got, x[:2].astype(np.int64))


def test_corrupt_deflate_stream_is_one_line(tmp_path):
    path = _npz(tmp_path / "c.npz", **{"inputs.npy": _npy_header("|u1", (2, 3, 1, 6, 6))
                                       + bytes(216)})
    data = bytearray(path.read_bytes())
    data[data.find(b"PK\x03\x04") + 30 + len("inputs.npy") + 40] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(InputFileError, match="'inputs' (is corrupt|unreadable)"):
        load_inputs(path, INP, 4)
