"""Hostile build directories, output paths and names (issue 10, build/output half).

Every case here could fail: a build is untrusted input when loaded (manifest paths, listed
members, links, FIFOs, sizes, JSON depth, every integer range-checked), names from files
never become paths outside the build, and every output is written atomically, with OS
errors as one line and exit 2. Writes outside the output path are caught by an audit hook
and by directory snapshots."""
import errno
import hashlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from snncompile.build import Build
from snncompile.cli import main, one_line
from snncompile.data import save_inputs
from snncompile.errors import (GraphError, InputFileError, OutputFileError,
                               SnnCompileError)
from snncompile.ir import Dense, Graph, Input, Output
from snncompile.ir.graph import save_npz_deterministic

REPO = Path(__file__).resolve().parent.parent

# ------------------------------------------------------------------ helpers
_AUDIT: list | None = None
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND


def _hook(event, args):
    if _AUDIT is None:
        return
    if event == "open":
        path, mode, flags = args
        writes = (isinstance(mode, str) and any(c in mode for c in "wax+")) or \
            (mode is None and isinstance(flags, int) and flags & _WRITE_FLAGS)
        if writes and isinstance(path, (str, bytes, os.PathLike)):
            _AUDIT.append(("open", os.fsdecode(path)))
    elif event in ("os.rename", "os.replace", "os.mkdir", "os.remove", "os.rmdir",
                   "os.symlink", "shutil.rmtree"):
        for a in args[:2] if event in ("os.rename", "os.replace") else args[:1]:
            if isinstance(a, (str, bytes, os.PathLike)):
                _AUDIT.append((event, os.fsdecode(a)))


sys.addaudithook(_hook)


class audit_writes:
    """Record every path opened for writing, created, renamed or removed in this process."""

    def __enter__(self):
        global _AUDIT
        _AUDIT = []
        self.events = _AUDIT
        return self

    def __exit__(self, *exc):
        global _AUDIT
        _AUDIT = None

    def outside(self, output: Path) -> list:
        """Events touching anything but `output`, paths inside it and its temporaries
        (`.NAME.tmp-...`, `.NAME.old-...` next to it)."""
        out = os.path.realpath(output)
        parent, name = os.path.dirname(out), os.path.basename(out)
        bad = []
        for event, path in self.events:
            real = os.path.realpath(path)
            first = real[len(parent) + 1:].split(os.sep)[0] \
                if real.startswith(parent + os.sep) else None
            ok = first is not None and (first == name or f".{name}.tmp-" in first or
                                        f".{name}.old-" in first)
            # torch/numba caches and the interpreter's own files are not outputs
            # mkdir -p along the output path itself
            ok = ok or (event == "os.mkdir" and out.startswith(real + os.sep))
            if not ok and not real.startswith(("/tmp/torchinductor", "/proc", "/dev")):
                bad.append((event, path))
        return bad


def snapshot(root: Path) -> dict:
    """Every path under `root` with its size and mtime."""
    snap = {}
    for folder, dirs, files in os.walk(root):
        for n in dirs + files:
            p = Path(folder) / n
            st = p.lstat()
            snap[str(p.relative_to(root))] = (st.st_size, st.st_mtime_ns)
    return snap


def one_line_error(capsys, argv, match, code=2):
    rc = main([str(a) for a in argv])
    err = capsys.readouterr().err.strip()
    assert rc == code, err
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    assert match in err, err
    assert "\x1b" not in err
    return err


def reseal(build: Path) -> None:
    """Recompute the checksums of every listed member: a hostile but consistent build."""
    mpath = build / "manifest.json"
    manifest = json.loads(mpath.read_text())
    manifest["files"] = {n: hashlib.sha256((build / n).read_bytes()).hexdigest()
                         for n in manifest["files"]}
    mpath.write_text(json.dumps(manifest))


def edit_manifest(build: Path, fn) -> None:
    mpath = build / "manifest.json"
    manifest = json.loads(mpath.read_text())
    fn(manifest)
    mpath.write_text(json.dumps(manifest))


def hand_graph() -> Graph:
    """A float graph small enough to compile in well under a second."""
    rng = np.random.default_rng(0)
    from snncompile.ir import LIF
    return Graph.sequential([
        Input("input", shape=(6,)),
        Dense("fc1", weight=rng.normal(0, 1, (4, 6)).astype(np.float32)),
        LIF("lif1", shape=(4,), du=0.2, dv=0.1, vth=0.5),
        Output("output")], meta={"source": "hand"})


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """(build directory, inputs .npz) compiled once; tests copy the build."""
    from snncompile.pipeline import compile_model
    root = tmp_path_factory.mktemp("built")
    x = (np.random.default_rng(1).random((4, 6, 6)) < 0.4).astype(np.uint8)
    inputs = root / "x.npz"
    save_inputs(inputs, x, np.zeros(4, np.int64))
    build = compile_model(hand_graph(), "loihi2", calib=x)
    build.save(root / "seed.build")
    return root / "seed.build", inputs


@pytest.fixture
def build_copy(built, tmp_path):
    import shutil
    src, inputs = built
    dst = tmp_path / "b.build"
    shutil.copytree(src, dst)
    return dst, inputs


# ------------------------------------------------------------------ names
@pytest.mark.parametrize("name", ["../evil", "a/b", "..", ".hidden", "a\nb", "x\x1b[2J",
                                  "", "a b", "n" * 129])
def test_node_names_must_be_identifier_like(name):
    g = Graph(meta={"source": "model.pt"})
    with pytest.raises(GraphError, match=r"model.pt: layer/node name .* is not allowed; "
                                         r"names must match"):
        g.add(Input(name, shape=(3,)))


def test_legal_names_pass():
    g = Graph()
    for name in ("input", "L0_dense", "att.coproc", "features.0", "0", "a-b"):
        g.add(Input(name, shape=(1,)))


def test_graph_document_with_bad_name_is_refused(tmp_path):
    doc, arrays = hand_graph().to_dict()
    doc["nodes"][1]["name"] = "../../fc1"
    doc["nodes"][2]["inputs"] = ["../../fc1"]
    with pytest.raises(InputFileError, match="is not allowed"):
        Graph.from_dict(doc, arrays)


def _attention_checkpoint(path: Path, name: str) -> None:
    from snncompile.nn import save_checkpoint
    from snncompile.nn.attention import AttentionSNN
    torch.manual_seed(0)
    att = {"type": "attention", "kind": "ca", "mode": "causal", "t_ratio": 1,
           "c_ratio": 2, "kernel": 3, "gain_bits": 8, "name": name}
    model = AttentionSNN({"input": {"shape": [10], "encoding": "spikes", "steps": 8},
                          "layers": [{"type": "dense", "out": 12, "name": "fc1"}, att,
                                     {"type": "lif", "du": 0.3, "dv": 0.1, "vth": 0.5,
                                      "name": "lif1"},
                                     {"type": "dense", "out": 5, "name": "fc2"},
                                     {"type": "lif", "du": 0.3, "dv": 0.1, "vth": 0.5,
                                      "name": "lif2"}]})
    save_checkpoint(model, path)


def test_attention_layer_named_dotdot_writes_nothing_outside(tmp_path, capsys):
    """The co-processor ONNX file is named after the layer: `../../evil` must not become
    `coproc/../../evil.coproc.onnx` outside the build; one line, exit 2."""
    work = tmp_path / "work"
    work.mkdir()
    ckpt = work / "att.pt"
    _attention_checkpoint(ckpt, "../../evil")
    calib = work / "calib.npz"
    save_inputs(calib, (np.random.default_rng(0).random((4, 8, 10)) < 0.4).astype(np.uint8))
    before = snapshot(tmp_path)
    out = work / "sub" / "att.build"
    with audit_writes() as audit:
        err = one_line_error(capsys, ["compile", ckpt, "--calib", calib, "-o", out],
                             "is not allowed")
    assert "'../../evil'" in err and "names must match" in err
    assert audit.outside(out) == [] or all(
        e == "os.mkdir" and p == str(work / "sub") for e, p in audit.outside(out))
    after = snapshot(tmp_path)
    assert set(after) - set(before) <= {"work/sub"}, sorted(set(after) - set(before))


def test_attention_layer_with_legal_name_compiles_its_coproc_file(tmp_path, capsys):
    ckpt = tmp_path / "att.pt"
    _attention_checkpoint(ckpt, "att")
    calib = tmp_path / "calib.npz"
    save_inputs(calib, (np.random.default_rng(0).random((4, 8, 10)) < 0.4).astype(np.uint8))
    out = tmp_path / "att.build"
    with audit_writes() as audit:
        assert main(["compile", str(ckpt), "--calib", str(calib), "-o", str(out),
                     "--quiet"]) == 0
    assert audit.outside(out) == []
    assert (out / "coproc" / "att.coproc.onnx").is_file()
    manifest = json.loads((out / "manifest.json").read_text())
    assert "coproc/att.coproc.onnx" in manifest["files"]
    assert Build.load(out).graph is not None


def test_checkpoint_layer_name_with_escapes_is_one_escaped_line(tmp_path, capsys):
    """A checkpoint layer name carrying a newline and an ANSI escape: refused by the name
    check, printed escaped on one line, nothing written."""
    from snncompile.nn import SNN, save_checkpoint
    bad = "lif1\x1b[2J\nnext"
    model = SNN({"input": {"shape": [6], "encoding": "spikes"},
                 "layers": [{"type": "dense", "out": 4, "name": "fc1"},
                            {"type": "lif", "du": 0.2, "dv": 0.1, "vth": 0.5, "name": bad}]})
    path = tmp_path / "m.pt"
    save_checkpoint(model, path)
    calib = tmp_path / "c.npz"
    save_inputs(calib, np.zeros((2, 4, 6), np.uint8))
    before = snapshot(tmp_path)
    err = one_line_error(capsys, ["compile", path, "--calib", calib, "-o",
                                  tmp_path / "m.build"], "is not allowed")
    assert "m.pt: layer/node name 'lif1\\x1b[2J\\nnext'" in err
    assert snapshot(tmp_path) == before


def test_resealed_coproc_output_must_match_its_port(tmp_path):
    """A gain port re-declared with another shape reached the simulator's broadcast (a
    ValueError traceback): the loader compares it with the co-processor graph."""
    from snncompile.pipeline import compile_model
    ckpt = tmp_path / "att.pt"
    _attention_checkpoint(ckpt, "att")
    x = (np.random.default_rng(0).random((4, 8, 10)) < 0.4).astype(np.int64)
    compile_model(ckpt, "loihi2", calib=x).save(tmp_path / "a.build")
    doc = json.loads((tmp_path / "a.build" / "graph.json").read_text())
    entry = next(e for e in doc["nodes"] if e["op"] == "FxCoprocOut")
    assert entry["attrs"]["shape"] != [1]
    entry["attrs"]["shape"] = [1]  # still broadcasts to the gated current
    (tmp_path / "a.build" / "graph.json").write_text(json.dumps(doc))
    reseal(tmp_path / "a.build")
    with pytest.raises(InputFileError, match="is not an output of 'att.coproc'"):
        Build.load(tmp_path / "a.build")


def test_resealed_loop_delay_timing_must_match_the_graph(tmp_path):
    """An HTDA loop delay whose latency is re-declared made the integer reference index
    history that does not exist (a torch ValueError): the loader checks the timing."""
    from test_attention_compile import compiled_htda
    build, _ = compiled_htda(1, tmp_path)
    build.save(tmp_path / "h.build")
    Build.load(tmp_path / "h.build")  # as compiled: accepted
    doc = json.loads((tmp_path / "h.build" / "graph.json").read_text())
    entry = next(e for e in doc["nodes"] if e["op"] == "FxDelay")
    entry["attrs"]["latency"] = 0
    (tmp_path / "h.build" / "graph.json").write_text(json.dumps(doc))
    reseal(tmp_path / "h.build")
    with pytest.raises(InputFileError, match="latency 0 / target_depth 1 do not match"):
        Build.load(tmp_path / "h.build")


@pytest.mark.parametrize("member", ["../evil.onnx", "/tmp/evil.onnx", "coproc/../../x",
                                    "a//b", ".hidden"])
def test_build_writer_refuses_member_paths_outside(built, tmp_path, member):
    build = Build.load(built[0])
    build.extra_bytes = {member: b"payload"}
    before = snapshot(tmp_path)
    with pytest.raises(OutputFileError, match="refusing to write build member"):
        build.save(tmp_path / "x.build")
    assert snapshot(tmp_path) == before  # no temporaries left, nothing outside
    assert not Path("/tmp/evil.onnx").exists()


def test_build_writer_refuses_a_symlinked_member_folder(built, tmp_path, monkeypatch):
    """A link in the way (coproc -> elsewhere) resolves outside: refused."""
    import snncompile.build as bmod
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    real_write = bmod.Build._write

    def write_with_link(self, tmp):
        os.symlink(elsewhere, tmp / "coproc")
        real_write(self, tmp)
    monkeypatch.setattr(bmod.Build, "_write", write_with_link)
    build = Build.load(built[0])
    build.extra_bytes = {"coproc/a.onnx": b"x"}
    with pytest.raises(OutputFileError, match="refusing to write build member"):
        build.save(tmp_path / "x.build")
    assert list(elsewhere.iterdir()) == []


# ------------------------------------------------------------------ manifests
@pytest.mark.parametrize("bad", ["/etc/passwd", "../seed.build/graph.json", "a/../b",
                                 "graph.json/", "./graph.json", "x\\..\\y"])
def test_manifest_paths_outside_are_refused_unread(build_copy, capsys, bad):
    build, inputs = build_copy
    edit_manifest(build, lambda m: m["files"].__setitem__(bad, "0" * 64))
    reads = []

    def hook(event, args):
        if event == "open" and reads is not None:
            reads.append(os.fsdecode(args[0]) if isinstance(args[0], (str, bytes)) else "")
    sys.addaudithook(hook)
    try:
        err = one_line_error(capsys, ["run", build, "--inputs", inputs], "is not allowed")
    finally:
        opened, reads = list(reads), None
    assert "member path" in err
    assert not any(p.startswith("/etc") or p.endswith(("passwd", "seed.build/graph.json"))
                   for p in opened)


@pytest.mark.parametrize("files, match", [
    ({}, "does not list"), ([], "'files' must be an object"),
    ("x", "'files' must be an object"), (None, "'files' must be an object")])
def test_manifest_files_must_be_a_complete_object(build_copy, capsys, files, match):
    build, inputs = build_copy
    edit_manifest(build, lambda m: m.__setitem__("files", files))
    one_line_error(capsys, ["run", build, "--inputs", inputs], match)


@pytest.mark.parametrize("member", ["arrays.npz", "target.toml", "graph.json",
                                    "float/arrays.npz"])
def test_every_member_the_loader_reads_must_be_listed(build_copy, capsys, member):
    build, inputs = build_copy
    edit_manifest(build, lambda m: m["files"].pop(member))
    one_line_error(capsys, ["run", build, "--inputs", inputs], "does not list")


def test_listed_member_missing_or_modified(build_copy, capsys):
    build, inputs = build_copy
    (build / "report.md").write_text("tampered")
    one_line_error(capsys, ["run", build, "--inputs", inputs], "checksum mismatch")
    (build / "report.md").unlink()
    one_line_error(capsys, ["run", build, "--inputs", inputs], "report.md: missing")


def test_bad_checksum_value_is_one_line(build_copy, capsys):
    build, inputs = build_copy
    edit_manifest(build, lambda m: m["files"].__setitem__("graph.json", ["x"]))
    one_line_error(capsys, ["run", build, "--inputs", inputs], "64 hex digits")


@pytest.mark.parametrize("target", ["/dev/zero", "/etc/passwd", "outside"])
def test_symlinked_members_are_refused(build_copy, capsys, tmp_path, target):
    """A member that is a link (to /dev/zero: memory; to a local file: a read outside) is
    refused without following it, even with a matching checksum of its target."""
    build, inputs = build_copy
    if target == "outside":
        target = tmp_path / "outside.md"
        target.write_text((build / "report.md").read_text())
    (build / "report.md").unlink()
    os.symlink(target, build / "report.md")
    one_line_error(capsys, ["run", build, "--inputs", inputs], "is a symbolic link")


def test_symlinked_member_folder_is_refused(build_copy, capsys, tmp_path):
    import shutil
    build, inputs = build_copy
    shutil.move(build / "float", tmp_path / "float_elsewhere")
    os.symlink(tmp_path / "float_elsewhere", build / "float")
    one_line_error(capsys, ["run", build, "--inputs", inputs], "is a symbolic link")


def test_fifo_member_does_not_block(build_copy, tmp_path):
    """A FIFO blocks a plain open() forever: the loader refuses it at once."""
    build, inputs = build_copy
    (build / "report.md").unlink()
    os.mkfifo(build / "report.md")
    proc = subprocess.run([sys.executable, "-m", "snncompile.cli", "run", str(build),
                           "--inputs", str(inputs)], capture_output=True, text=True,
                          timeout=120, cwd=REPO, env=dict(os.environ, PYTHONPATH=str(REPO)))
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.count("\n") == 1 and "not a regular file" in proc.stderr


def test_member_size_is_bounded_before_reading(build_copy, capsys, monkeypatch):
    import snncompile.build as bmod
    build, inputs = build_copy
    size = (build / "arrays.npz").stat().st_size
    monkeypatch.setattr(bmod, "MAX_MEMBER_BYTES", size - 1)
    one_line_error(capsys, ["run", build, "--inputs", inputs],
                   f"{size} bytes exceeds the {size - 1} allowed")


def test_manifest_size_and_json_depth_are_bounded(build_copy, capsys):
    build, inputs = build_copy
    m = json.loads((build / "manifest.json").read_text())
    m["deep"] = []
    (build / "manifest.json").write_text(json.dumps(m)[:-1] + ', "x": ' + "[" * 100_000
                                         + "]" * 100_000 + "}")
    one_line_error(capsys, ["run", build, "--inputs", inputs], "manifest.json: ")
    (build / "manifest.json").write_text(json.dumps(dict(m, deep=[[[[[]]]]] * 1)) +
                                         " " * (2 << 20))
    one_line_error(capsys, ["run", build, "--inputs", inputs], "bytes exceeds")
    deep = {"a": []}
    cur = deep["a"]
    for _ in range(200):  # deeper than MAX_JSON_DEPTH, shallower than Python's limit
        cur.append([])
        cur = cur[0]
    (build / "manifest.json").write_text(json.dumps(dict(m, deep=deep)))
    one_line_error(capsys, ["run", build, "--inputs", inputs], "nested deeper than")


def test_target_base_must_be_builtin(build_copy, capsys, tmp_path):
    build, inputs = build_copy
    evil = tmp_path / "evil.toml"
    evil.write_text((build / "target.toml").read_text())
    (build / "target.toml").write_text(f'base = "{evil}"\n')
    reseal(build)
    one_line_error(capsys, ["run", build, "--inputs", inputs], "is not a built-in target")


@pytest.mark.parametrize("report", [[], {"mapping": []}, {"mapping": {"chips": "2"}},
                                    {"mapping": {"chips": 10 ** 30}}])
def test_resealed_report_is_checked(build_copy, capsys, report):
    build, inputs = build_copy
    (build / "report.json").write_text(json.dumps(report))
    reseal(build)
    one_line_error(capsys, ["energy", build, "--inputs", inputs], "not a compile report")


def test_target_name_with_escapes_is_refused(build_copy, capsys):
    build, inputs = build_copy
    text = (build / "target.toml").read_text().replace('name = "loihi2"',
                                                       'name = "loihi2\\u001b[2J"')
    assert "\\u001b" in text
    (build / "target.toml").write_text(text)
    reseal(build)
    one_line_error(capsys, ["energy", build, "--inputs", inputs], "must be printable text")


# ------------------------------------------------------------------ resealed bad values
def _set_attr(node, key, value):
    def edit(doc, arrays):
        entry = next(e for e in doc["nodes"] if e["name"] == node)
        entry["attrs"][key] = value
    return edit


def _set_array(node, key, fn):
    def edit(doc, arrays):
        arrays[f"{node}/{key}"] = fn(arrays[f"{node}/{key}"])
    return edit


BAD_VALUES = {
    "vth=-5": (_set_attr("lif1", "vth", -5), "vth (-5) outside [0, 131071]"),
    "du=5000": (_set_attr("lif1", "du", 5000), "du (5000) outside [0, 4095]"),
    "dv=-1": (_set_attr("lif1", "dv", -1), "dv (-1) outside [0, 4096]"),
    "vth=2**20": (_set_attr("lif1", "vth", 1 << 20), "vth (1048576)"),
    "bias_exp=9": (_set_attr("lif1", "bias_exp", 9), "bias_exp (9) outside [0, 7]"),
    "weight_exp=20": (_set_attr("fc1", "weight_exp", 20), "weight_exp (20) outside [-8, 7]"),
    "num_weight_bits=0": (_set_attr("fc1", "num_weight_bits", 0), "num_weight_bits (0)"),
    "float du": (_set_attr("lif1", "du", 2.5), "du (2.5) must be an integer"),
    "weights 1e6": (_set_array("fc1", "weight", lambda w: np.full_like(w, 10 ** 6)),
                    "weight (1000000) outside [-256, 255]"),
    "weights 2**62": (_set_array("fc1", "weight",
                                 lambda w: np.full(w.shape, 1 << 62, np.int64)),
                      f"weight ({1 << 62}) outside"),
    "float weights": (_set_array("fc1", "weight", lambda w: w.astype(np.float64) + 0.5),
                      "weight has dtype float64, not integers"),
    "bias 2**20": (_set_array("lif1", "bias_mant", lambda b: np.full_like(b, 1 << 20)),
                   "bias_mant (1048576) outside [-4096, 4095]"),
    "bias shape": (_set_array("lif1", "bias_mant", lambda b: np.zeros(7, b.dtype)),
                   "bias_mant of shape (7,) does not fit"),
}


@pytest.mark.parametrize("case", sorted(BAD_VALUES))
def test_resealed_build_with_out_of_range_values_is_refused(build_copy, capsys, case):
    """A re-hashed build passes the checksums; the range check still refuses it, naming
    node, field, value and limit (these ran on `sim` with exit 0 before)."""
    from snncompile.ir import load_npz
    edit, match = BAD_VALUES[case]
    build, inputs = build_copy
    doc = json.loads((build / "graph.json").read_text())
    arrays = load_npz(build / "arrays.npz")
    edit(doc, arrays)
    (build / "graph.json").write_text(json.dumps(doc))
    save_npz_deterministic(build / "arrays.npz", arrays)
    reseal(build)
    err = one_line_error(capsys, ["run", build, "--inputs", inputs, "--backend", "sim"],
                         match)
    assert "node '" in err


@pytest.mark.parametrize("value, match", [(np.nan, "must be finite real numbers"),
                                          (1j, "complex")])
def test_resealed_float_graph_with_bad_values_is_refused(build_copy, capsys, value, match):
    from snncompile.ir import load_npz
    build, inputs = build_copy
    arrays = load_npz(build / "float" / "arrays.npz")
    arrays["fc1/weight"] = arrays["fc1/weight"] + value
    save_npz_deterministic(build / "float" / "arrays.npz", arrays)
    reseal(build)
    one_line_error(capsys, ["run", build, "--inputs", inputs], match)


def test_graph_document_with_conv_stride_zero_is_one_error():
    from snncompile.ir import Conv2d
    g = Graph.sequential([Input("input", shape=(1, 4, 4)),
                          Conv2d("c", weight=np.ones((2, 1, 3, 3), np.float32)),
                          Output("output")])
    doc, arrays = g.to_dict()
    doc["nodes"][1]["attrs"]["stride"] = [0, 0]
    with pytest.raises(InputFileError, match=r"Conv2d stride = 0 must be an integer"):
        Graph.from_dict(doc, arrays)


def test_unmodified_build_passes_the_range_check(built, capsys):
    build, inputs = built
    assert main(["run", str(build), "--inputs", str(inputs), "-o",
                 str(build.parent / "ok.npz")]) == 0


def test_netx_conventions_pass_the_range_check(tmp_path):
    """netx builds keep netx's own ranges (du = iDecay - 1 = -1, vth and bias beyond the
    target's mantissas, the bias within Lava's int16 bias_mant): a netx network using them
    compiles, loads and runs."""
    import h5py
    from snncompile.pipeline import compile_model
    path = tmp_path / "n.net"
    with h5py.File(path, "w") as f:
        g = f.create_group("layer/0")
        g.create_dataset("type", (1,), "S10", [b"dense"])
        g.create_dataset("shape", data=np.array([3]))
        g.create_dataset("weight", data=np.arange(-6, 6).reshape(3, 4).astype(np.float32))
        g.create_dataset("bias", data=np.full(3, 30000.0))
        for key, value in {"type": "CUBA", "iDecay": 0, "vDecay": 200, "vThMant": 1 << 20,
                           "refDelay": 1, "gradedSpike": False}.items():
            g.create_dataset(f"neuron/{key}", data=value)
    compile_model(path, "loihi2").save(tmp_path / "n.build")
    loaded = Build.load(tmp_path / "n.build")
    lif = next(n for n in loaded.graph.nodes() if type(n).__name__ == "FxLIF")
    assert lif.du == -1 and lif.vth == 1 << 20 and int(lif.bias_mant.max()) == 30000
    assert "netx/network.net" in loaded.members
    out = tmp_path / "again.net"
    with audit_writes() as audit:
        assert main(["export", str(tmp_path / "n.build"), "--format", "netx", "-o",
                     str(out)]) == 0
    assert audit.outside(out) == [] and out.is_file()


# ------------------------------------------------------------------ atomic outputs
def _enospc(monkeypatch):
    import snncompile.safe_io as sio

    def full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    monkeypatch.setattr(sio.os, "fsync", full)


def test_enospc_on_json_keeps_the_old_file(built, capsys, monkeypatch, tmp_path):
    build, inputs = built
    js = tmp_path / "v.json"
    js.write_text("old")
    _enospc(monkeypatch)
    err = one_line_error(capsys, ["verify", build, "--inputs", inputs, "--backends",
                                  "reference,sim", "--json", js], "No space left on device")
    assert str(js) in err and js.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["v.json"]


def test_enospc_on_run_output_and_build(built, capsys, monkeypatch, tmp_path):
    build, inputs = built
    out = tmp_path / "o.npz"
    _enospc(monkeypatch)
    err = one_line_error(capsys, ["run", build, "--inputs", inputs, "-o", out],
                         "No space left on device")
    assert str(out) in err and not out.exists()
    b = Build.load(build)
    with pytest.raises(OutputFileError, match="No space left on device"):
        b.save(tmp_path / "new.build")
    assert list(tmp_path.iterdir()) == []


def test_read_only_folder_is_one_line(built, capsys, monkeypatch, tmp_path):
    """(Simulated: the tests may run as root, which ignores permission bits.)"""
    import snncompile.safe_io as sio
    build, inputs = built
    real = sio.os.open

    def ro(path, flags, *a, **k):
        if flags & os.O_CREAT:
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))
        return real(path, flags, *a, **k)
    monkeypatch.setattr(sio.os, "open", ro)
    one_line_error(capsys, ["run", build, "--inputs", inputs, "-o", tmp_path / "o.npz"],
                   "Read-only file system")


@pytest.mark.parametrize("out, match", [
    (".", "not a usable output name"), ("missing/dir/o.npz", "does not exist"),
    ("n" * 300 + ".npz", "File name too long"), ("n" * 220 + ".npz", "file name is 224 bytes"),
    ("dir", "is a directory")])
def test_bad_output_paths_are_one_line(built, capsys, tmp_path, monkeypatch, out, match):
    build, inputs = built
    monkeypatch.chdir(tmp_path)
    (tmp_path / "dir").mkdir()
    one_line_error(capsys, ["run", build, "--inputs", inputs, "-o", out], match)


@pytest.mark.parametrize("out, match", [
    (".", "not a usable output name"), ("n" * 300, "File name too long"),
    ("f.txt", "exists and is not a directory")])
def test_bad_build_paths_are_one_line(capsys, tmp_path, monkeypatch, out, match):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "f.txt").write_text("x")
    (tmp_path / "m.pt").write_bytes(b"")
    one_line_error(capsys, ["compile", "m.pt", "--calib", "x.npz", "-o", out], match)


def test_output_path_checks_accept_ordinary_paths(tmp_path):
    from snncompile.safe_io import check_output_path
    assert check_output_path(f"{tmp_path}/m.build/", directory=True) == tmp_path / "m.build"
    assert check_output_path(tmp_path / "new" / "deep" / "m.build", directory=True,
                             make_parents=True)
    with pytest.raises(OutputFileError, match="not a usable output name"):
        check_output_path(f"{tmp_path}/o.json/")
    with pytest.raises(OutputFileError, match="does not exist"):
        check_output_path(tmp_path / "new" / "o.json")


def test_json_at_a_symlink_is_refused_before_any_work(built, capsys, tmp_path):
    build, inputs = built
    target = tmp_path / "real.json"
    target.write_text("keep")
    link = tmp_path / "link.json"
    os.symlink(target, link)
    for argv in (["verify", build, "--inputs", inputs, "--json", link],
                 ["energy", build, "--inputs", inputs, "--json", link],
                 ["energy", build, "--inputs", inputs, "--plot", link],
                 ["run", build, "--inputs", inputs, "-o", link],
                 ["export", build, "--format", "nir", "-o", link]):
        err = one_line_error(capsys, argv, "is a symbolic link")
        assert "refusing to replace it" in err
    assert os.path.islink(link) and target.read_text() == "keep"


def test_outputs_are_written_atomically_and_only_there(built, capsys, tmp_path):
    build, inputs = built
    outs = {"run": tmp_path / "o.npz", "json": tmp_path / "e.json",
            "plot": tmp_path / "e.png", "nir": tmp_path / "m.nir"}
    cases = [(["run", build, "--inputs", inputs, "-o", outs["run"]], outs["run"]),
             (["energy", build, "--inputs", inputs, "--json", outs["json"]], outs["json"]),
             (["energy", build, "--inputs", inputs, "--plot", outs["plot"]], outs["plot"]),
             (["export", build, "--format", "nir", "-o", outs["nir"]], outs["nir"])]
    for argv, out in cases:
        with audit_writes() as audit:
            assert main([str(a) for a in argv]) == 0, capsys.readouterr().err
        assert out.is_file() and out.stat().st_size > 0
        bad = [(e, p) for e, p in audit.outside(out)
               if not p.startswith(str(Path.home())) and "matplotlib" not in p]
        assert bad == [], (argv[0], bad)
        assert any(e in ("os.replace", "os.rename") for e, _ in audit.events), argv
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(o.name for o in outs.values())


# ------------------------------------------------------------------ interrupted builds
KILL_SCRIPT = textwrap.dedent("""\
    import os, signal, sys
    from snncompile.build import Build
    import snncompile.safe_io as sio
    mode, src, dst = sys.argv[1:4]
    real_rename = os.rename
    calls = []
    def rename(a, b, *k, **kw):
        calls.append(a)
        if mode == "between" and len(calls) == 2:  # old moved aside, new not yet in place
            os.kill(os.getpid(), signal.SIGKILL)
        return real_rename(a, b, *k, **kw)
    sio.os.rename = rename
    if mode == "writing":
        real_write = Build._write
        def write(self, tmp):
            real_write(self, tmp)
            os.kill(os.getpid(), signal.SIGKILL)
        Build._write = write
    Build.load(src).save(dst)
""")


def _killed_save(mode, src, dst):
    proc = subprocess.run([sys.executable, "-c", KILL_SCRIPT, mode, str(src), str(dst)],
                          capture_output=True, text=True, timeout=120, cwd=REPO,
                          env=dict(os.environ, PYTHONPATH=str(REPO)))
    assert proc.returncode == -signal.SIGKILL, proc.stderr


def test_kill_between_the_renames_is_recovered_by_the_next_load(built, tmp_path):
    import shutil
    src, inputs = built
    dst = tmp_path / "m.build"
    shutil.copytree(src, dst)
    old_manifest = (dst / "manifest.json").read_bytes()
    _killed_save("between", src, dst)
    assert not dst.exists()  # the state the issue describes: target missing, old aside
    assert sorted(p.name.split("-")[0] for p in tmp_path.iterdir()) == [".m.build.old",
                                                                        ".m.build.tmp"]
    assert Build.load(dst).graph is not None  # recovered
    assert (dst / "manifest.json").read_bytes() == old_manifest
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.build"]


def test_kill_between_the_renames_is_recovered_by_the_next_compile(built, tmp_path):
    import shutil
    src, _ = built
    dst = tmp_path / "m.build"
    shutil.copytree(src, dst)
    _killed_save("between", src, dst)
    _killed_save("writing", src, dst)  # and a kill while writing: a .tmp- leftover
    names = sorted(p.name.split("-")[0] for p in tmp_path.iterdir())
    assert names == [".m.build.tmp"] or ".m.build.tmp" in names, names
    Build.load(src).save(dst)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.build"]
    assert Build.load(dst).graph is not None


def test_leftovers_of_live_writers_are_left_alone(built, tmp_path):
    """Only temporaries of processes that no longer run are removed."""
    src, _ = built
    live = tmp_path / f".m.build.tmp-{os.getppid()}-abcd1234"
    live.mkdir()
    Build.load(src).save(tmp_path / "m.build")
    assert live.is_dir()


CONCURRENT = textwrap.dedent("""\
    import sys
    from snncompile.build import Build
    b = Build.load(sys.argv[1])
    for _ in range(int(sys.argv[3])):
        b.save(sys.argv[2])
""")


def test_two_writers_to_the_same_build_both_succeed(built, tmp_path):
    src, _ = built
    dst = tmp_path / "race.build"
    env = dict(os.environ, PYTHONPATH=str(REPO))
    procs = [subprocess.Popen([sys.executable, "-c", CONCURRENT, str(src), str(dst), "40"],
                              stderr=subprocess.PIPE, text=True, cwd=REPO, env=env)
             for _ in range(3)]
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["race.build"]
    assert Build.load(dst).graph is not None


def test_a_writer_landing_between_our_two_renames(built, tmp_path, monkeypatch):
    """The interleaving that made the second of two racing compiles exit 3 (ENOTEMPTY):
    another writer installs its build after ours moved the old one aside. Both succeed,
    the last one wins, nothing is left over."""
    import snncompile.safe_io as sio
    src, _ = built
    dst = tmp_path / "m.build"
    mine, other = Build.load(src), Build.load(src)
    mine.save(dst)
    other.report = dict(other.report, marker="other")
    real, fired = os.rename, []

    def rename(a, b, *k, **kw):
        real(a, b, *k, **kw)
        if not fired and ".old-" in os.fspath(b):
            fired.append(b)
            other.save(dst)  # lands between our two renames
    monkeypatch.setattr(sio.os, "rename", rename)
    mine.save(dst)
    assert fired and Build.load(dst).report.get("marker") is None  # ours, last, won
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.build"]


# ------------------------------------------------------------------ one line
def test_control_characters_in_errors_are_escaped(built, capsys, tmp_path):
    _, inputs = built
    bad = tmp_path / "evil\n\x1b[31mred\x1b[0m\u202e.build"
    err = one_line_error(capsys, ["run", bad, "--inputs", inputs], "not found")
    assert "\\n" in err and "\\x1b[31m" in err and "\\u202e" in err


def test_one_line_keeps_ordinary_text():
    assert one_line("a b: ≤ 4095 (x) é") == "a b: ≤ 4095 (x) é"
    assert one_line("a\tb\r\n\x00\x9b") == "a\\tb\\r\\n\\x00\\x9b"


NOISY = textwrap.dedent("""\
    import sys, warnings
    import numpy as np
    import snncompile.build as bmod
    from snncompile.cli import main
    from snncompile.errors import InputFileError
    def noisy(path):
        warnings.warn("torch says something", UserWarning)
        np.float64(1e308) * np.float64(10)  # numpy RuntimeWarning: overflow
        if sys.argv[1] == "fail":
            raise InputFileError(f"{path}: bad")
        return real(path)
    real = bmod.Build.load
    bmod.Build.load = staticmethod(noisy)
    sys.exit(main(sys.argv[2:]))
""")


def test_third_party_warnings_do_not_reach_the_terminal_on_errors(built, tmp_path):
    """(A subprocess: pytest itself would capture the warnings.)"""
    build, inputs = built
    env = dict(os.environ, PYTHONPATH=str(REPO))
    argv = ["run", str(build), "--inputs", str(inputs), "-o", str(tmp_path / "o.npz")]
    fail = subprocess.run([sys.executable, "-c", NOISY, "fail", *argv], capture_output=True,
                          text=True, timeout=120, cwd=REPO, env=env)
    assert fail.returncode == 2
    assert fail.stderr.count("\n") == 1 and ": bad" in fail.stderr, fail.stderr
    ok = subprocess.run([sys.executable, "-c", NOISY, "ok", *argv], capture_output=True,
                        text=True, timeout=120, cwd=REPO, env=env)
    assert ok.returncode == 0, ok.stderr
    assert "torch says something" in ok.stderr  # a command that finishes still shows them


def test_os_errors_are_one_line_exit_2(built, capsys, monkeypatch):
    import snncompile.cli as cli
    build, inputs = built

    def boom(args):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), "/some/where")
    monkeypatch.setattr(cli, "cmd_run", boom)
    one_line_error(capsys, ["run", build, "--inputs", inputs],
                   "/some/where: Permission denied")


def test_npz_members_of_a_build_are_named(build_copy, capsys):
    build, inputs = build_copy
    with zipfile.ZipFile(build / "arrays.npz", "w") as zf:
        zf.writestr("fc1/weight.npy", b"not npy")
    reseal(build)
    one_line_error(capsys, ["run", build, "--inputs", inputs], "b.build/")


# ------------------------------------------------------------------ resealed fuzz
_EXTREMES = [-(1 << 62), -(1 << 31), -(1 << 23), -5000, -257, -9, -2, -1, 0, 1, 2, 7, 8, 9,
             255, 256, 4095, 4096, 5000, 131071, 131072, 1 << 23, 1 << 25, 1 << 31, 1 << 62]


def test_fuzz_resealed_values_either_refused_or_safe(built, tmp_path):
    """Structured mutations of a resealed build (integer attributes and array entries set
    to extremes, arrays recast): `Build.load` refuses it with one InputFileError, or the
    simulator and the integer reference run it without any other exception. Derandomized
    like tests/test_fuzz.py; SNNCOMPILE_FUZZ_EXAMPLES explores more."""
    import shutil

    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st
    from hypothesis_profile import examples

    from snncompile.ir import load_npz
    from snncompile.backends.reference import reference_run
    from snncompile.backends.sim import Simulator
    src, _ = built
    x = (np.random.default_rng(3).random((2, 5, 6)) < 0.5).astype(np.int64)
    doc0 = json.loads((src / "graph.json").read_text())
    arrays0 = load_npz(src / "arrays.npz")
    int_attrs = [(i, k) for i, e in enumerate(doc0["nodes"]) for k, v in e["attrs"].items()
                 if isinstance(v, int) and not isinstance(v, bool)]
    deep = "SNNCOMPILE_FUZZ_EXAMPLES" in os.environ
    fuzz = settings(max_examples=int(os.environ.get("SNNCOMPILE_FUZZ_EXAMPLES", examples(40))),
                    deadline=None, database=None, derandomize=not deep,
                    suppress_health_check=[HealthCheck.function_scoped_fixture,
                                           HealthCheck.too_slow])
    edits = st.one_of(
        st.tuples(st.just("attr"), st.sampled_from(int_attrs), st.sampled_from(_EXTREMES)),
        st.tuples(st.just("array"), st.sampled_from(sorted(arrays0)),
                  st.sampled_from(_EXTREMES)),
        st.tuples(st.just("dtype"), st.sampled_from(sorted(arrays0)),
                  st.sampled_from(["float32", "int64", "uint8", "bool", "complex64"])))

    @fuzz
    @given(st.lists(edits, min_size=1, max_size=3))
    def run(changes):
        build = tmp_path / "f.build"
        if build.exists():
            shutil.rmtree(build)
        shutil.copytree(src, build)
        doc, arrays = json.loads(json.dumps(doc0)), dict(arrays0)
        for kind, where, value in changes:
            if kind == "attr":
                doc["nodes"][where[0]]["attrs"][where[1]] = value
            elif kind == "array":
                a = arrays[where].astype(np.int64)
                if a.size:
                    a.flat[0] = value
                arrays[where] = a
            else:
                arrays[where] = arrays[where].astype(value)
        (build / "graph.json").write_text(json.dumps(doc))
        save_npz_deterministic(build / "arrays.npz", arrays)
        reseal(build)
        try:
            loaded = Build.load(build)
        except InputFileError as exc:
            assert "\n" not in str(exc)
            return
        for fn in (lambda: Simulator(loaded.graph, loaded.target.numerics).run(x),
                   lambda: reference_run(loaded.graph, x, loaded.target.numerics)):
            try:
                fn()
            except SnnCompileError as exc:  # one line on the CLI, exit 2
                assert "\n" not in str(exc)
    run()


def test_save_check_sees_one_directory_while_another_writer_swaps(built, tmp_path, monkeypatch):
    """The race behind a flaky two-writers run: writer B looked at the path, writer A moved
    the old build aside, and B's next look found no manifest.json and refused. The check now
    reads one directory descriptor, so the swap in between does not change its answer."""
    import snncompile.build as bmod
    src, _ = built
    dst = tmp_path / "swap.build"
    Build.load(src).save(dst)
    real = os.listdir

    def listdir(fd):
        if not isinstance(fd, int):
            return real(fd)
        os.rename(dst, tmp_path / ".swap.build.old-1-x")   # writer A, first rename
        return real(fd)

    monkeypatch.setattr(bmod.os, "listdir", listdir)
    assert bmod._replaceable(dst)
    monkeypatch.setattr(bmod.os, "listdir", real)
    (tmp_path / "file.build").write_text("not a build")
    assert not bmod._replaceable(tmp_path / "file.build")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("x")
    assert not bmod._replaceable(tmp_path / "other")
    assert bmod._replaceable(tmp_path / "nothing-here")
