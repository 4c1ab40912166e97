"""Whole-window attention (the released MA-SNN form, `mode: "window"`) compiled in window
mode (issue 12): the co-processor buffers the window's current, computes the gains once the
window is complete, and the gates act on the delayed copy it sends back, T steps later
(`snncompile.ir.timing`).

Checked: every kind (TA, CA, SA, TCA, TSA, CSA, TCSA) compiles for loihi2 and the integer
reference (co-processor through its ONNX model), the simulator and Lava agree spike for
spike and on every value crossing the boundary; the delay is T steps in the timing; the
gains depend on the whole window (a change in the last frame reaches step 0); the compiled
network is faithful to the float window model (a trained checkpoint and a calibrated
TCSA network); the report and the energy model state the latency and the buffer.
"""
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from hypothesis_profile import examples

from snncompile.backends.float_model import run_float
from snncompile.backends.sim import Simulator
from snncompile.errors import GraphError
from snncompile.frontends import graph_from_model
from snncompile.ir import ATTENTION_PARTS, FxCoproc, graphs_equal
from snncompile.ir.timing import added_delay, timing
from snncompile.pipeline import compile_model
from test_attention_compile import SLOW_OK, _lava_equals_simulator, attention_net
from agreement import sim_equals_reference as _agree

ROOT = Path(__file__).resolve().parent.parent
STEPS = 8
KINDS = sorted(ATTENTION_PARTS)
#: every kind on a conv current, and the kinds a dense current takes
CASES = [(k, True) for k in KINDS] + [("ta", False), ("ca", False), ("tca", False)]


def compiled_window(variant: str, conv: bool, seed: int = 3, n: int = 4):
    model = attention_net(variant, conv, seed, mode="window")
    graph = graph_from_model(model)
    rng = np.random.default_rng(seed)
    shape = graph.input_node().shape
    calib = (rng.random((16, STEPS) + shape) < 0.4).astype(np.int64)
    x = (rng.random((n, STEPS) + shape) < 0.4).astype(np.int64)
    return compile_model(graph, "loihi2", calib=calib), x


@pytest.mark.parametrize("variant, conv", CASES)
def test_every_kind_compiles_with_the_window_delay_and_reference_equals_simulator(variant,
                                                                                  conv):
    build, x = compiled_window(variant, conv)
    g = build.graph
    syn = "conv1" if conv else "fc1"
    cop = g.node("att.coproc")
    assert cop.window == STEPS and cop.latency == 0
    assert cop.cgraph.inputs["a"].shape == (STEPS,) + g.shape(syn)
    first = ATTENTION_PARTS[variant][0]      # the first gate reads the delayed current
    assert g.inputs(f"att.gate_{first}") == ["att.current", f"att.g_{first}"]
    tm = timing(g, STEPS)
    # the neurons after the attention run T steps later than the current they gate
    assert tm.depth["lif1"] == tm.depth[syn] + STEPS and added_delay(g) == STEPS
    assert tm.buffers_from("att.coproc") == tm.depth[syn]
    sim = _agree(build, x)
    for v in ATTENTION_PARTS[variant]:
        gains = sim.boundary[f"att.g_{v}"]
        assert len(np.unique(gains)) > 1, v         # not a constant sigmoid(0)
        if v != "ta":   # one gain (map) per sample for the whole window
            assert (gains == gains[:, :1]).all(), v
    # the current the gates read is the synapse's, sent back unchanged
    assert np.array_equal(sim.boundary["att.current"], sim.boundary[f"att.coproc<-{syn}"])


@settings(max_examples=examples(8), **SLOW_OK)
@given(st.sampled_from(CASES), st.integers(0, 10_000))
def test_random_window_networks_reference_equals_simulator(case, seed):
    _agree(*compiled_window(*case, seed=seed))


def test_window_gains_depend_on_the_whole_window():
    """Changing only the second half of the window changes the gain applied at step 0
    (the released form pools over all T steps); in causal mode it cannot."""
    for mode, changes in (("window", True), ("causal", False)):
        model = attention_net("ca", True, 0, mode=mode)
        graph = graph_from_model(model)
        rng = np.random.default_rng(4)
        x = (rng.random((6, STEPS, 2, 5, 5)) < 0.4).astype(np.int64)
        build = compile_model(graph, "loihi2", calib=x)
        y = x.copy()
        y[:, STEPS // 2:] = 1
        sim = Simulator(build.graph)
        a, b = (sim.run(z).boundary["att.g_ca"][:, 0] for z in (x, y))
        assert len(np.unique(a)) > 1                 # gains that do depend on the input
        assert (not np.array_equal(a, b)) == changes, mode


@pytest.mark.parametrize("variant, conv", CASES)
def test_window_float_graph_equals_the_training_model(variant, conv):
    model = attention_net(variant, conv, 7, mode="window").eval()
    graph = graph_from_model(model)
    x = (np.random.default_rng(7).random((4, STEPS) + graph.input_node().shape) < 0.4)
    out = run_float(graph, x.astype(np.float32))
    with torch.no_grad():
        want = model(torch.as_tensor(x, dtype=torch.float32)).numpy()
    assert want.any()
    assert np.array_equal(out["lif2"], want.astype(bool))


@pytest.mark.lava
@pytest.mark.parametrize("variant, conv", [(k, True) for k in KINDS] + [("tca", False)])
def test_window_mode_on_lava_equals_the_simulator(variant, conv):
    """Lava runs the samples back to back: the partition buffers sample n + 1 while it
    sends sample n's gains and current back."""
    _lava_equals_simulator(*compiled_window(variant, conv, n=3))


@pytest.mark.lava
@settings(max_examples=examples(3), **SLOW_OK)
@given(st.sampled_from(CASES), st.integers(0, 10_000))
def test_random_window_networks_on_lava_equal_the_simulator(case, seed):
    _lava_equals_simulator(*compiled_window(*case, seed=seed, n=2))


def test_build_round_trips_and_other_window_lengths_are_refused(tmp_path):
    from snncompile.build import Build
    build, x = compiled_window("tcsa", True)
    build.save(tmp_path / "b")
    again = Build.load(tmp_path / "b")
    assert graphs_equal(again.graph, build.graph)
    assert again.graph.node("att.coproc").window == STEPS
    with pytest.raises(GraphError, match="att.coproc: the whole-window attention partition "
                                         "was compiled for windows of 8 steps; the inputs "
                                         "have 6 steps per sample"):
        Simulator(build.graph).run(x[:, :6])


# ------------------------------------------------------------------ faithfulness
def test_trained_whole_window_ta_checkpoint_is_faithful():
    """The committed events TA checkpoint (trained in window mode, as released)."""
    from examples.datasets.events import event_timing
    from snncompile.verify.compare import verify
    xtr, _, xte, yte = event_timing(steps=16, seed=0)
    build = compile_model(ROOT / "examples" / "checkpoints" /
                          "attention_events_ta_window.pt", "loihi2", calib=xtr[:128])
    assert build.graph.node("att1.coproc").window == 16
    assert not build.report["fidelity"]["warnings"]
    rep = verify(build, xte[:60], yte[:60], backends=("reference", "sim"))
    assert rep.equivalent and rep.faithful is True, rep.text()
    assert rep.accuracy["compiled"] >= rep.accuracy["float"] - 0.02


def _calibrated_window_tcsa(x: torch.Tensor):
    """2x16x16 events -> conv 16 (window TCSA, LIF, 2x2 sum pool) -> conv 32 (window TCSA,
    LIF, pool) -> fc 11; random weights normalised on `x` as in test_attention_bias's
    gesture network (unit-RMS currents, attention logits spread 1.5, LIFs firing 10%)."""
    from snncompile.nn.attention import AttentionSNN
    from test_attention_bias import normalise_to_fire
    att = {"type": "attention", "kind": "tcsa", "mode": "window", "t_ratio": 2,
           "c_ratio": 4, "kernel": 3, "gain_bits": 8}
    lif = {"type": "lif", "du": 0.5, "dv": 0.2}
    layers = []
    for i, c in enumerate((16, 32), 1):
        layers += [{"type": "conv2d", "out": c, "kernel": 3, "padding": 1, "name": f"conv{i}"},
                   dict(att, name=f"att{i}"), dict(lif, name=f"lif{i}"),
                   {"type": "sumpool2d", "kernel": 2}]
    layers += [{"type": "flatten"}, {"type": "dense", "out": 11, "name": "fc3"},
               dict(lif, name="lif3")]
    torch.manual_seed(0)
    model = AttentionSNN({"input": {"shape": [2, 16, 16], "encoding": "spikes",
                                    "steps": STEPS}, "layers": layers}).eval()
    return normalise_to_fire(model, x)


def test_calibrated_window_tcsa_network_is_faithful():
    from examples.datasets.events import event_timing
    from snncompile.verify.compare import verify
    xtr, _, xte, _ = event_timing(n_train=24, n_test=40, steps=STEPS, size=(16, 16), seed=2)
    model = _calibrated_window_tcsa(torch.as_tensor(xtr[:8], dtype=torch.float32))
    build = compile_model(graph_from_model(model), "loihi2", calib=xtr[8:24])
    assert [n.window for n in build.graph.nodes(FxCoproc)] == [STEPS, STEPS]
    assert added_delay(build.graph) == 2 * STEPS       # two window layers in a chain
    rep = verify(build, xte, backends=("reference", "sim"))
    assert rep.equivalent and rep.faithful is True, rep.text()


# ------------------------------------------------------------------ report and energy
def test_report_and_energy_state_the_added_latency_and_the_buffer():
    from snncompile.energy.run import energy_report
    build, x = compiled_window("ca", True)
    p = build.report["partition"]
    (q,) = p["partitions"]
    # the conv current: 4 x 5 x 5 = 100 values of 24 bits, buffered for 8 steps
    assert (q["window"], q["delay_steps"], q["buffer_bytes"]) == (STEPS, STEPS, 2400)
    assert p["added_delay_steps"] == STEPS
    chans = {(c["src"], c["dst"]): c for c in p["channels"]}
    back = chans[("att.current", "att.gate_ca")]      # the delayed current, per step
    assert (back["values_per_step"], back["bits"], back["bytes_per_step"]) == (100, 24, 300)
    assert chans[("att.g_ca", "att.gate_ca")]["bytes_per_step"] == 4
    d = p["window_delay"]
    assert d["steps"] == STEPS and d["step_s"] > 0
    assert d["seconds"] == pytest.approx(STEPS * d["step_s"])
    us = f"{STEPS * d['step_s'] * 1e6:.3g} us"
    assert (f"the neurons after it run {STEPS} steps later than in causal mode, about {us}"
            in build.report_md)
    assert "2,400 bytes per sample" in build.report_md
    assert f"Added latency per inference: {STEPS} steps, about {us}" in build.report_md
    from snncompile.report.html import build_page
    assert f"Added latency per inference: {STEPS} steps, about {us}" in build_page(build).html()
    rep, _ = energy_report(build, x)
    e = rep.to_json()
    assert e["latency_per_inference_s"] == pytest.approx(e["latency_per_step_s"] * 2 * STEPS)
    assert e["events"]["lif1"]["coproc_buffer_bytes"] == 2 * 2400   # written, read
    assert any("whole-window attention delays each inference by 8 steps" in n
               for n in e["notes"])
