"""After a failed faithfulness verdict, `verify` runs the float model again under
rounding-sized noise (`snncompile.verify.sensitivity`) and says whether the compiled drift
is within what that noise gives the float model itself. Two networks make both answers
happen: one whose compile was sabotaged (a threshold raised after quantisation: outside the
spread) and one whose neurons are driven by a single shared bias that rounding cannot hit
(within the spread)."""
import json
import re
import subprocess
import sys
import warnings

import numpy as np
import pytest

from pathlib import Path

from snncompile.ir import Conv2d, Dense, Flatten, Graph, Input, LIF, Output
from snncompile.pipeline import FidelityWarning, compile_model
from snncompile.verify.compare import verify
from snncompile.verify.sensitivity import Spread, explain, rounding_errors

ROOT = Path(__file__).resolve().parent.parent


def _compiled(graph, x):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FidelityWarning)
        return compile_model(graph, "loihi2", calib=x)


def _well_conditioned(seed=0):
    rng = np.random.default_rng(seed)
    g = Graph.sequential([
        Input("in", shape=(40,)),
        Dense("fc1", weight=rng.normal(0, .35, (60, 40))), LIF("lif1", shape=(60,), du=.3,
                                                                 dv=.1, vth=1.0),
        Dense("fc2", weight=rng.normal(0, .35, (10, 60))), LIF("lif2", shape=(10,), du=.3,
                                                                 dv=.1, vth=1.0),
        Output("out")])
    x = (rng.random((24, 30, 40)) < .3).astype(np.int64)
    return g, x


def _bias_driven(b_shared: float = 0.105):
    """A conv whose channel 1 has no input weights, only a bias that its 64 neurons share:
    they spike together, so the layer's count is a staircase in that one bias (at 0.105,
    v settles just above threshold: a few spikes in 40 steps, and few more or fewer for a
    small change of b). Channel 0's large negative bias (it never fires) sets the bias
    axon's exponent, so channel 1's rounding step is coarse (2**4 / scale, about 0.03)."""
    w = np.zeros((2, 1, 3, 3))
    w[0] = 0.3
    g = Graph.sequential([
        Input("in", shape=(1, 8, 8)),
        Conv2d("conv", weight=w, bias=np.array([-4.0, b_shared]), padding=(1, 1)),
        LIF("lif1", shape=(2, 8, 8), du=.5, dv=.2, vth=1.0), Flatten("flat"),
        Dense("fc", weight=np.full((2, 128), .05)), LIF("lif2", shape=(2,), du=.5, dv=.2,
                                                         vth=1.0),
        Output("out")])
    x = (np.random.default_rng(0).random((8, 40, 1, 8, 8)) < .2).astype(np.int64)
    return g, x


def test_a_faithful_build_runs_no_perturbation():
    g, x = _well_conditioned()
    rep = verify(_compiled(g, x), x, backends=("sim",))
    assert rep.fidelity.faithful is True
    assert rep.fidelity.sensitivity is None


def test_a_sabotaged_compile_is_outside_the_float_models_spread():
    g, x = _well_conditioned()
    build = _compiled(g, x)
    assert verify(build, x, backends=("sim",)).fidelity.faithful is True
    lif = build.graph.node("lif1")
    lif.vth = int(lif.vth * 1.4)          # a compile error: the threshold 40% too high
    rep = verify(build, x, backends=("sim",))
    fid = rep.fidelity
    assert fid.faithful is False
    lo, hi = fid.sensitivity["layers"]["lif1"]
    assert max(abs(lo), abs(hi)) < 0.05   # rounding-sized noise barely moves this model
    line = next(s for s in fid.sensitivity["lines"] if s.startswith("sensitivity: lif1:"))
    assert "outside that" in line
    assert line in rep.text() and line in rep.summary()
    assert {"fc1.weight", "lif1.vth", "lif1.dv"} <= set(fid.sensitivity["perturbed"])


def test_a_model_driven_by_one_shared_bias_is_within_the_spread():
    g, x = _bias_driven()
    build = _compiled(g, x)
    errs = rounding_errors(build)
    assert errs[("conv", "bias")][1] > 1e-3     # the shared bias is rounded coarsely
    assert errs[("lif1", "dv")][0] == "uniform" and ("fc", "weight") in errs
    rep = verify(build, x, backends=("sim",), sensitivity=5)
    fid = rep.fidelity
    assert fid.faithful is False, fid.text()
    row = {r["layer"]: r for r in fid.layers}["lif1"]
    assert abs(row["difference"]) > 0.05
    line = next(s for s in fid.sensitivity["lines"] if s.startswith("sensitivity: lif1:"))
    assert "within that" in line, line
    assert "conv.bias" in fid.sensitivity["perturbed"]
    # the build's float graph is restored after the perturbed runs
    assert np.array_equal(build.float_graph.node("conv").bias, [-4.0, 0.105])


def test_sensitivity_zero_turns_it_off_and_draws_are_reproducible():
    g, x = _well_conditioned()
    build = _compiled(g, x)
    build.graph.node("lif1").vth = int(build.graph.node("lif1").vth * 1.4)
    assert verify(build, x, backends=("sim",), sensitivity=0).fidelity.sensitivity is None
    a = verify(build, x, backends=("sim",)).fidelity.sensitivity
    b = verify(build, x, backends=("sim",)).fidelity.sensitivity
    assert a == b


def test_explain_compares_the_drift_with_the_spread():
    class Rep:
        tolerance = {"spikes": .05, "correlation": .9, "agreement": .9}
        layers = [{"layer": "a", "difference": -.08}, {"layer": "b", "difference": .3},
                  {"layer": "c", "difference": .01}]
        agreement = .8
    s = Spread(draws=3, seed=0, layers={"a": [-.1, .02], "b": [-.05, .1], "c": [0, 0]},
               agreement=[.75, .9], perturbed=[], not_perturbed=[])
    lines = explain(Rep(), s)
    assert len(lines) == 3                       # c is within tolerance: no line
    assert "within that" in lines[0] and "-8.0%" in lines[0]
    assert "outside that" in lines[1] and "+30.0%" in lines[1]
    assert "80.0%" in lines[2] and "within that" in lines[2]


def test_cli_verify_prints_the_sensitivity_on_stderr_and_in_the_json(tmp_path):
    g, x = _well_conditioned()
    build = _compiled(g, x)
    build.graph.node("lif1").vth = int(build.graph.node("lif1").vth * 1.4)
    build.save(tmp_path / "b.build")
    np.savez(tmp_path / "x.npz", inputs=x)
    out = tmp_path / "v.json"
    r = subprocess.run([sys.executable, "-m", "snncompile.cli", "verify", str(tmp_path /
                        "b.build"), "--inputs", str(tmp_path / "x.npz"), "--backends", "sim,reference",
                        "--json", str(out), "--quiet", "--sensitivity", "2"],
                       capture_output=True, text=True)
    assert r.returncode == 4, r.stderr          # 4: not faithful
    assert "sensitivity: lif1:" in r.stderr and "outside that" in r.stderr
    doc = json.loads(out.read_text())
    assert doc["fidelity"]["sensitivity"]["draws"] == 2
    bad = subprocess.run([sys.executable, "-m", "snncompile.cli", "verify", str(tmp_path /
                          "b.build"), "--inputs", str(tmp_path / "x.npz"), "--sensitivity",
                          "-1"], capture_output=True, text=True)
    assert bad.returncode == 2 and "between 0 and 100" in bad.stderr


def test_rounding_attribution_names_the_rounding_that_moves_the_layer(tmp_path, capsys):
    """bench/rounding_attribution.py on the bias-driven conv: the conv's compiled bias
    alone gives the float model the compiled network's own lif1 drift; its weights,
    rounded, change nothing there."""
    sys.path.insert(0, str(ROOT / "bench"))
    import rounding_attribution
    g, x = _bias_driven()
    build = _compiled(g, x)
    drift = {r["layer"]: r for r in verify(build, x, backends=("sim",), sensitivity=0)
             .fidelity.layers}["lif1"]["difference"]
    build.save(tmp_path / "b.build")
    np.savez(tmp_path / "x.npz", inputs=x)
    assert rounding_attribution.main([str(tmp_path / "b.build"), "--inputs",
                                      str(tmp_path / "x.npz")]) == 0
    rows = {}
    for line in capsys.readouterr().out.splitlines():
        label, *values = re.split(r"\s{2,}", line.strip())
        rows[label] = values
    assert float(rows["conv bias"][0].rstrip("%")) == pytest.approx(100 * drift, abs=0.05)
    assert rows["conv weight"][0] == "+0.0%"


def test_compile_adds_the_sensitivity_to_a_failed_calibration_check(recwarn):
    """compile's own check on the calibration data fails for the bias-driven conv; its
    warnings (stderr in the CLI) and report.json say the float model moves as much."""
    g, x = _bias_driven()
    build = compile_model(g, "loihi2", calib=x)
    fid = build.report["fidelity"]
    assert fid["verdict"] == "NOT FAITHFUL"
    lines = fid["sensitivity"]["lines"]
    assert any(s.startswith("sensitivity: lif1:") and "within that" in s for s in lines)
    assert set(lines) <= set(fid["warnings"])
    warned = [str(w.message) for w in recwarn if issubclass(w.category, FidelityWarning)]
    assert set(lines) <= set(warned)
    assert "The compile or the model? sensitivity: lif1:" in build.report_md
