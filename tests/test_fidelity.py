"""The second verdict: is the compiled network faithful to the float model it came from?

Through the command line on the committed digits MLP (the issue's case: compiled without
calibration, 24-bit current wraps in lif1 and verify used to say EQUIVALENT, exit 0), a
build whose layers are all silent, a lava-dl netx file that wraps (no float model exists),
and the HTDA checkpoint (its float graph holds the trained top-down loop)."""
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from snncompile.cli import main
from snncompile.data import save_inputs
from snncompile.nn import SNN, save_checkpoint
from conftest import TINY_CONFIG

ROOT = Path(__file__).resolve().parent.parent
MLP = ROOT / "examples" / "checkpoints" / "digits_mlp.pt"


@pytest.fixture(scope="module")
def digits_files(tmp_path_factory):
    from examples.datasets.digits import digits
    d = tmp_path_factory.mktemp("digits")
    xtr, ytr, xte, yte = digits(steps=16)
    save_inputs(d / "train.npz", xtr[:256], ytr[:256])
    save_inputs(d / "test.npz", xte[:120], yte[:120])
    return d / "train.npz", d / "test.npz"


def _stderr_lines(capsys):
    cap = capsys.readouterr()
    return cap.out, [ln for ln in cap.err.splitlines() if ln.strip()]


def test_no_calib_mlp_compiles_with_a_warning_and_verify_says_unfaithful(
        digits_files, tmp_path, capsys):
    train, test = digits_files
    build = tmp_path / "nocal.build"
    assert main(["compile", str(MLP), "--no-calib", "-o", str(build), "--quiet"]) == 0
    _, err = _stderr_lines(capsys)
    assert len(err) == 1 and "no calibration data" in err[0] and "--calib" in err[0], err
    assert "Not checked: no calibration data" in (build / "report.md").read_text()

    js = tmp_path / "v.json"
    rc = main(["verify", str(build), "--inputs", str(test), "--backends", "reference,sim",
               "--json", str(js)])
    out, err = _stderr_lines(capsys)
    assert rc == 4, out                                      # backends agree, unfaithful
    assert "EQUIVALENT: 0 mismatching" in out and "NOT FAITHFUL" in out
    assert "NOT FAITHFUL" in err[0] and "lif1" in err[0], err
    # then the float model's own spread under rounding-sized noise: an uncalibrated compile
    # drifts far beyond it (every failed layer gets a line, and the decisions one)
    rest = err[1:]
    assert rest and all(line.startswith("snncompile: verify: sensitivity: ") for line in rest)
    lif1_line = next(line for line in rest if "sensitivity: lif1:" in line)
    assert "outside that" in lif1_line
    assert "is below that" in rest[-1] and "sensitivity: output:" in rest[-1]
    rep = json.loads(js.read_text())
    fid = rep["fidelity"]
    assert rep["equivalent"] and rep["faithful"] is False and rep["exit_code"] == 4
    assert fid["verdict"] == "NOT FAITHFUL" and fid["worst"]["layer"] == "lif1"
    lif1 = fid["layers"][0]
    assert lif1["layer"] == "lif1" and lif1["difference"] < -0.3     # measured: -46%
    assert lif1["correlation"] < 0.9 and fid["agreement"] < 0.5      # measured: 0.35, 26%
    assert fid["accuracy"]["float"] - fid["accuracy"]["compiled"] > 0.5
    assert any("24-bit current (u) wraps" in n for n in fid["notes"])


def test_calibrated_mlp_is_faithful_and_the_report_has_the_table(digits_files, tmp_path,
                                                                 capsys):
    train, test = digits_files
    build = tmp_path / "cal.build"
    assert main(["compile", str(MLP), "--calib", str(train), "-o", str(build),
                 "--quiet"]) == 0
    _, err = _stderr_lines(capsys)
    assert err == []                                         # nothing to warn about
    md = (build / "report.md").read_text()
    assert "## Fidelity on calibration data" in md and "**FAITHFUL**" in md
    assert "| layer | neurons | float spikes | compiled spikes | difference |" in md
    rep = json.loads((build / "report.json").read_text())
    assert rep["calibration"]["steps"] == 16 and rep["calibration"]["samples"] == 256
    fid = rep["fidelity"]
    assert fid["verdict"] == "FAITHFUL" and fid["warnings"] == []
    assert [r["layer"] for r in fid["layers"]] == ["lif1", "lif2"]
    assert all(r["float"] > 0 and abs(r["difference"]) < 0.05 for r in fid["layers"])

    js = tmp_path / "v.json"
    rc = main(["verify", str(build), "--inputs", str(test), "--backends", "reference,sim",
               "--json", str(js)])
    out, err = _stderr_lines(capsys)
    assert rc == 0 and err == [], err
    assert "FAITHFUL to the float model" in out and "worst layer" in out
    v = json.loads(js.read_text())
    assert v["faithful"] is True and v["fidelity"]["agreement"] >= 0.9
    # the tolerance is a flag: nothing is exactly equal, so a zero tolerance fails
    rc = main(["verify", str(build), "--inputs", str(test), "--backends", "reference,sim",
               "--tolerance", "0", "--min-agreement", "1"])
    out, err = _stderr_lines(capsys)
    verdict = [line for line in err if "NOT FAITHFUL" in line]
    assert rc == 4 and len(verdict) == 1 and "tolerance +-0%" in verdict[0], err
    # each failed layer and the decisions get the float model's own spread beside them
    assert [line.split("sensitivity: ")[1].split(":")[0] for line in err
            if "sensitivity:" in line] == ["lif1", "lif2", "output"], err


def _silent_checkpoint(path):
    torch.manual_seed(0)
    model = SNN(TINY_CONFIG)
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(1e-3)                 # far below every threshold: nothing ever fires
    save_checkpoint(model, path)


def test_all_silent_build_warns_at_compile_and_fails_verify(tiny_files, tmp_path, capsys):
    _, inputs, _, _ = tiny_files
    ckpt = tmp_path / "silent.pt"
    _silent_checkpoint(ckpt)
    build = tmp_path / "silent.build"
    assert main(["compile", str(ckpt), "--calib", str(inputs), "-o", str(build),
                 "--quiet"]) == 0
    _, err = _stderr_lines(capsys)
    assert len(err) >= 2 and all(e.startswith("snncompile: warning: ") for e in err), err
    assert any("lif1: silent" in e for e in err) and any("lif2 (output): silent" in e
                                                         for e in err), err
    assert "NOT FAITHFUL" in (build / "report.md").read_text()
    rc = main(["verify", str(build), "--inputs", str(inputs), "--backends", "reference,sim"])
    out, err = _stderr_lines(capsys)
    assert rc == 4 and "EQUIVALENT: 0 mismatching" in out      # every backend agrees...
    assert "NOT FAITHFUL" in err[-1] and "silent" in err[-1], err   # ...on nothing
    # --strict turns the warnings into one error, and nothing is written
    rc = main(["compile", str(ckpt), "--calib", str(inputs), "-o", str(tmp_path / "s2"),
               "--strict"])
    _, err = _stderr_lines(capsys)
    assert rc == 2 and len(err) == 1 and "silent" in err[0] and "--strict" in err[0], err
    assert not (tmp_path / "s2").exists()


def test_float_model_needs_calib_or_no_calib(tiny_files, tmp_path, capsys):
    ckpt, inputs, _, _ = tiny_files
    rc = main(["compile", str(ckpt), "-o", str(tmp_path / "b")])
    _, err = _stderr_lines(capsys)
    assert rc == 2 and len(err) == 1 and "--calib" in err[0] and "--no-calib" in err[0], err
    assert not (tmp_path / "b").exists()
    rc = main(["compile", str(ckpt), "--no-calib", "--strict", "-o", str(tmp_path / "b")])
    _, err = _stderr_lines(capsys)
    assert rc == 2 and len(err) == 1 and "no calibration data" in err[0], err
    assert not (tmp_path / "b").exists()
    with pytest.raises(SystemExit):                      # both at once: a usage error
        main(["compile", str(ckpt), "--no-calib", "--calib", str(inputs), "-o", "b"])


def test_python_api_without_calib_warns_not_fails(tiny_files):
    from snncompile.pipeline import FidelityWarning, compile_model
    with pytest.warns(FidelityWarning, match="no calibration data"):
        build = compile_model(tiny_files[0], "loihi2")
    assert build.report["fidelity"]["verdict"] == "NOT CHECKED"
    assert build.report["calibration"] is None


def test_inputs_with_another_length_warn(tiny_files, tmp_path, capsys):
    ckpt, inputs, x, y = tiny_files                     # calibrated on 10 steps
    build = tmp_path / "b"
    assert main(["compile", str(ckpt), "--calib", str(inputs), "-o", str(build),
                 "--quiet"]) == 0
    capsys.readouterr()
    short = tmp_path / "short.npz"
    save_inputs(short, x[:, :5], y)
    for cmd in (["run", str(build), "--inputs", str(short), "-o", str(tmp_path / "o.npz")],
                ["verify", str(build), "--inputs", str(short), "--backends",
                 "reference,sim", "--json", str(tmp_path / "v.json")],
                ["energy", str(build), "--inputs", str(short)]):
        main(cmd)
        _, err = _stderr_lines(capsys)
        warn = [e for e in err if "warning:" in e]
        assert len(warn) == 1 and "5 time steps" in warn[0] and "calibrated on 10" in warn[0]
    notes = json.loads((tmp_path / "v.json").read_text())["fidelity"]["notes"]
    assert any("calibrated on 10" in n for n in notes)


def test_exit_code_combines_both_verdicts():
    from snncompile.verify.fidelity import not_checked
    from snncompile.verify.compare import VerifyReport

    def rep(equivalent, faithful):
        fid = not_checked("x")
        if faithful is not None:
            fid.checked, fid.faithful = True, faithful
        return VerifyReport(equivalent=equivalent, mismatches=0 if equivalent else 3,
                            samples=1, steps=1, neurons_compared=1, backends={}, layers=[],
                            first_divergence=None, fidelity=fid)
    assert [rep(e, f).exit_code() for e, f in [(True, True), (False, True), (True, False),
                                               (False, False), (True, None)]] == [0, 1, 4, 5, 0]


def test_htda_float_side_is_the_float_graph_with_its_loop(tmp_path, capsys):
    from examples.datasets.events import digits_images
    xtr, ytr, xte, yte = digits_images(steps=16, encoding="bernoulli")
    save_inputs(tmp_path / "train.npz", xtr[:64], ytr[:64])
    save_inputs(tmp_path / "test.npz", xte[:30], yte[:30])
    build = tmp_path / "htda.build"
    assert main(["compile", str(ROOT / "examples/checkpoints/attention_digits_htda.pt"),
                 "--calib", str(tmp_path / "train.npz"), "-o", str(build), "--quiet"]) == 0
    assert (build / "float" / "graph.json").is_file()        # the loop is in float/
    assert not (build / "htda" / "model.pt").exists()        # no checkpoint copy any more
    js = tmp_path / "v.json"
    rc = main(["verify", str(build), "--inputs", str(tmp_path / "test.npz"), "--backends",
               "reference,sim", "--json", str(js)])
    out, err = _stderr_lines(capsys)
    fid = json.loads(js.read_text())["fidelity"]
    assert rc == 0 and fid["verdict"] == "FAITHFUL", out + "\n".join(err)
    assert fid["float_model"] == "float graph, float/"
    assert [r["layer"] for r in fid["layers"]] == ["lif1", "lif2", "lif3"]
    assert all(r["float"] > 0 for r in fid["layers"])


def test_netx_build_says_what_it_could_not_check_and_strict_refuses_wraps(tmp_path, capsys):
    slayer = pytest.importorskip("lava.lib.dl.slayer")
    from netx_files import export_blocks
    neuron = {"threshold": 1.25, "current_decay": 0.0, "voltage_decay": 0.0,
              "requires_grad": False}
    torch.manual_seed(0)
    blocks = [slayer.block.cuba.Dense(neuron, 32, 8, weight_scale=40, weight_norm=False),
              slayer.block.cuba.Dense(neuron, 8, 4, weight_scale=3, weight_norm=False)]
    with torch.no_grad():
        blocks[0].synapse.weight.abs_()      # excitatory, no current decay: u runs away
    net = tmp_path / "wrap.net"
    export_blocks(blocks, net, (torch.rand(1, 32, 4) < 0.3).float())
    x = (np.random.default_rng(0).random((4, 40, 32)) < 0.6).astype(np.uint8)
    save_inputs(tmp_path / "x.npz", x)
    capsys.readouterr()                      # lava-dl's import-time noise

    rc = main(["compile", str(net), "--calib", str(tmp_path / "x.npz"), "-o",
               str(tmp_path / "strict"), "--strict"])
    _, err = _stderr_lines(capsys)
    assert rc == 2 and len(err) == 1 and "24-bit current (u) wraps" in err[0], err
    assert not (tmp_path / "strict").exists()

    build = tmp_path / "b"
    assert main(["compile", str(net), "--calib", str(tmp_path / "x.npz"), "-o", str(build),
                 "--quiet"]) == 0
    _, err = _stderr_lines(capsys)
    assert any("L0_lif" in e and "wraps" in e for e in err), err
    rep = json.loads((build / "report.json").read_text())["fidelity"]
    assert rep["verdict"] == "NOT CHECKED" and "netx" in rep["reason"]
    assert "Not checked" in (build / "report.md").read_text()
    js = tmp_path / "v.json"
    rc = main(["verify", str(build), "--inputs", str(tmp_path / "x.npz"), "--backends",
               "reference,sim", "--json", str(js)])
    out, err = _stderr_lines(capsys)
    assert rc == 0, out                      # the backends agree; nothing else was checked
    assert "FAITHFUL to the float model" not in out
    assert "NOT CHECKED" in out and "no float model" in out
    assert any("NOT CHECKED" in e and "netx" in e for e in err), err
    v = json.loads(js.read_text())
    assert v["faithful"] is None and v["fidelity"]["verdict"] == "NOT CHECKED"
