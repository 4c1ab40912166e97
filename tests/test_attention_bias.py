"""Attention compiles without systematic bias (issue 9).

(a) The integer arithmetic: a gate rnd(a * g / 256) (rounding "nearest_even") has zero mean
    error against the exact product a * g / 256, for both signs and through TCSA's chain
    of three gates, and every implementation (co-processor op, its ONNX model run by
    onnx's reference evaluator, the simulator's gate, the reference's gate) gives the
    same integers; the lowering's sigmoid table read at rnd(logit / 2**s) has zero mean
    error against the float model's 8-bit gain of the exact logit. The floor versions of
    the same arithmetic are measured too, to show the tests can fail.
(b) Whole networks: on the committed attention demo checkpoints (compiled as
    examples/attention_demo.py does: loihi2, calibration data) and on a gesture-sized
    TCSA network (2x32x32 events, conv 64/128/128, fc 256/11, T = 12), every layer's
    compiled spike count (simulator) is within 3% of the float model's (run_float on the
    build's float graph).
"""
from pathlib import Path

import numpy as np
import pytest
import torch

import snncompile.passes.attention as lowering
from snncompile.coproc import CoprocGraph, ValueSpec
from snncompile.coproc.ops import Mul, ReduceMean, div_round, shift_round
from snncompile.coproc.onnx_export import build_onnx, run_onnx
from examples.datasets.events import digits_images, event_timing
from snncompile.frontends import graph_from_model
from snncompile.errors import UnsupportedError
from snncompile.ir import FxGate
from snncompile.nn import load_checkpoint
from snncompile.nn.attention import AttentionLayer, AttentionSNN, gain_to_int
from snncompile.nn.layers import LIFLayer
from snncompile.pipeline import compile_model
from snncompile.backends.reference import _gate as reference_gate
from snncompile.backends.sim import Simulator
from snncompile.backends.float_model import run_float
from snncompile.backends.sim.simulator import _Gate

ROOT = Path(__file__).resolve().parent.parent
TOLERANCE = 0.03      # per-layer relative spike-count difference, compiled vs float


# ---------------------------------------------------------------- (a) integer arithmetic
def _currents_and_gains(n=200_000, seed=0):
    rng = np.random.default_rng(seed)
    a = rng.integers(-2 ** 20, 2 ** 20, n)           # both signs, 24-bit-ish currents
    g = rng.integers(0, 256, n)
    return a, g


def test_rounding_helpers_are_round_half_to_even():
    x = np.arange(-5000, 5001)
    for s in range(1, 9):        # float64 holds x / 2**s exactly; np.round ties to even
        assert np.array_equal(shift_round(x, s, "nearest_even"), np.round(x / 2.0 ** s))
        assert np.array_equal(shift_round(x, s, "floor"), x >> s)
    for n in (1, 2, 3, 5, 7, 12, 49, 64, 1000):
        assert np.array_equal(div_round(x, n, "nearest_even"), np.round(x / n)), n
    # ties, both ways, both signs
    assert shift_round(np.array([-6, -2, 2, 6, 10]), 2, "nearest_even").tolist() == \
        [-2, 0, 0, 2, 2]


def test_gate_error_is_zero_in_expectation_and_all_gate_implementations_agree():
    a, g = _currents_and_gains()
    exact = a * g / 256.0
    node = FxGate("gate", shift=8, gain_bits=8, rounding="nearest_even")
    sim = _Gate(node, strict=True).step(a[:, None], g[:, None])[:, 0]
    ref = reference_gate(node, torch.as_tensor(a[:, None]), torch.as_tensor(g[:, None]))
    cg = CoprocGraph({"a": ValueSpec((1,), 24), "g": ValueSpec((1,), 8, signed=False)},
                     [Mul("y", ("a", "g"), shift=8, out_bits=24, rounding="nearest_even")],
                     ["y"])
    cop = cg.run_step({"a": a[:, None], "g": g[:, None]})[0]["y"][:, 0]
    k = 4000     # the ONNX reference evaluator is slow: a slice
    onx = run_onnx(build_onnx(cg), cg, {"a": a[:k, None], "g": g[:k, None]})[0]["y"][:, 0]
    assert np.array_equal(sim, ref.numpy()[:, 0]) and np.array_equal(sim, cop)
    assert np.array_equal(onx, sim[:k])
    err = sim - exact
    assert np.abs(err).max() <= 0.5                       # nearest: at most half an LSB
    assert abs(err.mean()) < 0.01, err.mean()             # unbiased (floor: -0.5)
    for sign in (a < 0, a > 0):
        assert abs(err[sign].mean()) < 0.01               # for either sign alone too
    floor = _Gate(FxGate("f", shift=8, gain_bits=8), strict=True).step(a, g)
    assert (floor - exact).mean() < -0.45                 # the bias the fix removes


@pytest.mark.parametrize("rounding", ["floor", "nearest_even"])
@pytest.mark.parametrize("relu", [False, True])
def test_reference_gate_equals_simulator_gate_at_the_extremes(rounding, relu):
    """The reference's gate (float64, exact) and the simulator's (integer shifts): int32
    messages at both ends and past them (wrapped), 16-bit gains, shifts 0..16, ties of
    both parities, broadcasting gains over time and space, nearest-neighbour upsampling;
    a gain beyond the reference's exact range is refused, not rounded."""
    rng = np.random.default_rng(4)
    a = np.concatenate([rng.integers(-2 ** 31, 2 ** 31, 2000), rng.integers(-600, 600, 2000),
                        [-2 ** 31, 2 ** 31 - 1, 2 ** 31, -2 ** 31 - 1, 2 ** 33 + 5, 0, -1, 1],
                        [k * 256 + 128 for k in range(-6, 6)]]).reshape(1, 1, -1, 1)
    a = np.repeat(a, 2, axis=0).repeat(3, axis=1).reshape(2, 3, -1, 2, 2)  # (N, T, C, H, W)
    for shift, bits in ((0, 1), (1, 8), (8, 8), (8, 16), (16, 16)):
        node = FxGate("g", shift=shift, gain_bits=bits, rounding=rounding, relu=relu)
        for gshape in ((2, 3) + a.shape[2:], (2, 1, a.shape[2], 1, 1), (2, 3, 1, 2, 2)):
            g = rng.integers(0, 2 ** bits, gshape)
            g.flat[:3] = [0, 2 ** bits - 1, 2 ** shift]
            want = _Gate(node, strict=False).step(a, g)
            got = reference_gate(node, torch.as_tensor(a), torch.as_tensor(g)).numpy()
            np.testing.assert_array_equal(got, want, err_msg=f"shift {shift} {gshape}")
    up = FxGate("u", shift=8, rounding=rounding, relu=relu, upsample=(2, 2))
    g = rng.integers(0, 256, (2, 3, a.shape[2], 1, 1))
    want = _Gate(up, strict=False).step(a, g)
    np.testing.assert_array_equal(
        reference_gate(up, torch.as_tensor(a), torch.as_tensor(g)).numpy(), want)
    with pytest.raises(UnsupportedError, match=r"g: gain 4194304 exceeds"):
        reference_gate(FxGate("g", shift=8), torch.as_tensor(a),
                       torch.full((2, 3, 1, 1, 1), 2 ** 22))


def test_tcsa_chain_of_three_gates_is_unbiased():
    """TCSA applies TA's, CA's and SA's gains one after the other, each gate on the
    previous gate's result; the error against the exact a * g1 * g2 * g3 / 2**24 stays
    zero on average (floor shifts add up to about -1.2 LSB)."""
    rng = np.random.default_rng(1)
    a, _ = _currents_and_gains(seed=1)
    gs = [rng.integers(100, 256, a.size) for _ in range(3)]
    exact = a * (gs[0] / 256.0) * (gs[1] / 256.0) * (gs[2] / 256.0)
    for rounding, lo, hi in (("nearest_even", -0.01, 0.01), ("floor", -1.6, -0.9)):
        node = FxGate("g", shift=8, gain_bits=8, rounding=rounding)
        cur = a
        for g in gs:
            cur = _Gate(node, strict=True).step(cur, g)
        assert lo < (cur - exact).mean() < hi, (rounding, (cur - exact).mean())


def test_mean_descriptor_is_unbiased():
    rng = np.random.default_rng(2)
    x = rng.integers(-2 ** 15, 2 ** 15, (20_000, 3, 7))        # n = 21 elements per mean
    exact = x.sum(axis=(1, 2)) / 21.0
    for rounding, lo, hi in (("nearest_even", -0.01, 0.01), ("floor", -0.6, -0.4)):
        op = ReduceMean("m", ("x",), axes=(0, 1), rounding=rounding)
        y, _ = op.forward([x])
        assert lo < (y - exact).mean() < hi, rounding


def _lut(scale: float, rounding: str):
    """The sigmoid table exactly as the lowering builds it, for a logit of `scale` integer
    units per float unit."""
    b = lowering._Builder("t", (1,), 24, np.zeros((1, 1, 1), np.int64))
    name = b.lut("k", "a", scale)
    op = b.ops[-1]
    assert op.name == name
    op.rounding = rounding
    return op


@pytest.mark.parametrize("scale", [97.3, 1406.1, 20011.0])
def test_sigmoid_table_error_is_zero_in_expectation(scale):
    rng = np.random.default_rng(3)
    # logits across the table's range (about +-8 in float), where the gain varies
    x = rng.integers(int(-6 * scale), int(6 * scale), 200_000)
    want = gain_to_int(1.0 / (1.0 + np.exp(-x / scale)))   # the float model's 8-bit gain
    got = _lut(scale, "nearest_even").forward([x])[0]
    err = got - want
    assert abs(err.mean()) < 0.05, err.mean()
    floored = _lut(scale, "floor").forward([x])[0]
    if scale > 200:  # a coarse index step: the floored index reads a lower entry
        assert (floored - want).mean() < -0.3
    # and the ONNX model of the same op gives the same gains
    cg = CoprocGraph({"a": ValueSpec((1,), 24)}, [_lut(scale, "nearest_even")], ["g_k"])
    k = 2000
    onx = run_onnx(build_onnx(cg), cg, {"a": x[:k, None]})[0]["g_k"][:, 0]
    assert np.array_equal(onx, got[:k])


# ---------------------------------------------------------------- (b) whole networks
def _spike_counts_off(build, x) -> dict[str, float]:
    sim = Simulator(build.graph).run(x)
    fl = run_float(build.float_graph, x)
    out = {}
    for name, spikes in sim.spikes.items():
        f, c = int(fl[name].sum()), int(spikes.sum())
        assert f > 100, f"{name}: too few float spikes ({f}) for a 3% comparison"
        out[name] = (c - f) / f
    return out


@pytest.fixture(scope="module")
def digits():
    return digits_images(steps=16, encoding="bernoulli")


@pytest.mark.parametrize("stem", ["attention_digits_ca_causal",
                                  "attention_digits_tcsa_causal",
                                  "attention_events_ta_causal"])
def test_demo_checkpoints_fire_like_the_float_model(stem, digits):
    if "digits" in stem:
        xtr, _, xte, _ = digits
    else:
        xtr, _, xte, _ = event_timing(steps=16, seed=0)
    build = compile_model(ROOT / "examples" / "checkpoints" / f"{stem}.pt", "loihi2",
                          calib=xtr[:128])
    off = _spike_counts_off(build, xte[:60])
    assert all(abs(v) <= TOLERANCE for v in off.values()), off


def test_floor_arithmetic_fails_the_bound(digits, monkeypatch):
    """The previous lowering (floor everywhere, 8-bit weights) on the TCSA checkpoint: the
    test above would catch it."""
    xtr, _, xte, _ = digits
    monkeypatch.setattr(lowering, "ROUNDING", "floor")
    monkeypatch.setattr(lowering, "WEIGHT_BITS", 8)
    build = compile_model(ROOT / "examples" / "checkpoints" /
                          "attention_digits_tcsa_causal.pt", "loihi2", calib=xtr[:128])
    assert all(g.rounding == "floor" for g in build.graph.nodes(FxGate))
    off = _spike_counts_off(build, xte[:60])
    assert min(off.values()) < -0.05, off


# -- a gesture-sized TCSA network (DVS-gesture-like input, random weights set up to fire)
T = 12
LIF = {"type": "lif", "du": 0.5, "dv": 0.2}


def _gesture_tcsa(x: torch.Tensor, attention: bool = True) -> AttentionSNN:
    """2x32x32 -> conv 64 -> conv 128 -> conv 128 (each: TCSA, LIF, 2x2 sum pool) -> fc 256
    -> fc 11. Random weights, normalised layer by layer on `x` so that every current has
    unit RMS, every attention logit a spread of 1.5 with each gain mostly above 1/2 (as in
    trained MA-SNNs), and every LIF fires at 10% (output: 30%) by its threshold."""
    att = {"type": "attention", "kind": "tcsa", "mode": "causal", "window": 4,
           "t_ratio": 2, "c_ratio": 8, "kernel": 3, "gain_bits": 8}
    layers = []
    for i, c in enumerate((64, 128, 128), 1):
        layers += [{"type": "conv2d", "out": c, "kernel": 3, "padding": 1,
                    "name": f"conv{i}"}]
        layers += [dict(att, name=f"att{i}")] if attention else []
        layers += [dict(LIF, vth=1.0, name=f"lif{i}"), {"type": "sumpool2d", "kernel": 2}]
    layers += [{"type": "flatten"}, {"type": "dense", "out": 256, "name": "fc4"},
               dict(LIF, vth=1.0, name="lif4"), {"type": "dense", "out": 11, "name": "fc5"},
               dict(LIF, vth=1.0, name="lif5")]
    torch.manual_seed(0)
    model = AttentionSNN({"input": {"shape": [2, 32, 32], "encoding": "spikes",
                                    "steps": T}, "layers": layers}).eval()
    return normalise_to_fire(model, x, output="lif5")


def normalise_to_fire(model: AttentionSNN, x: torch.Tensor, output: str | None = None):
    """Set `model`'s random weights up layer by layer on `x`: every synapse's current to
    unit RMS, every attention logit a spread of 1.5 (`_spread_logits`), and every LIF's
    threshold (by bisection) so that it fires at 10% of steps (`output`: at 30%)."""
    with torch.no_grad():
        h = x
        for name, layer in zip(model.names, model.layers):
            if name.startswith(("conv", "fc")):
                layer.module.weight.div_(float(layer(h).pow(2).mean().sqrt()))
            elif isinstance(layer, AttentionLayer):
                cur = h
                for mod in (layer.block.ta, layer.block.ca, layer.block.sa):
                    cur = _spread_logits(mod, cur)
            elif isinstance(layer, LIFLayer):
                target = 0.3 if name == output else 0.1
                lo, hi = 0.01, 100.0
                for _ in range(16):          # rate falls as the threshold rises
                    layer.vth = (lo * hi) ** 0.5
                    if layer(h).mean().item() > target:
                        lo = layer.vth
                    else:
                        hi = layer.vth
                layer.vth = hi
            h = layer(h)
    return model


def _spread_logits(mod, cur: torch.Tensor) -> torch.Tensor:
    """Scale (and orient) an attention module's last weights so its logits on `cur` have a
    standard deviation of 1.5 and a positive mean; returns the modulated current."""
    bits, mod.gain_bits = mod.gain_bits, None
    g = mod(cur).clamp(1e-6, 1 - 1e-6)
    mod.gain_bits = bits
    logit = torch.log(g / (1 - g))
    if hasattr(mod, "mlp"):
        w = mod.mlp[2].weight
        flip = logit.reshape(-1, w.shape[0]).mean(0) < 0 if w.shape[0] > 1 else \
            (logit.mean() < 0).reshape(1)
        w[flip] *= -1
    else:
        w = mod.conv.weight
        if logit.mean() < 0:
            w.neg_()
    w.mul_(1.5 / float(logit.std() + 1e-9))
    return mod(cur) * cur


@pytest.fixture(scope="module")
def gesture():
    xtr, _, xte, _ = event_timing(n_train=16, n_test=48, steps=T, size=(32, 32), seed=1)
    torch.set_num_threads(2)
    model = _gesture_tcsa(torch.as_tensor(xtr[:4], dtype=torch.float32))
    return graph_from_model(model), xtr[4:12], xte


def test_gesture_sized_tcsa_fires_like_the_float_model(gesture):
    graph, calib, x = gesture
    build = compile_model(graph, "loihi2", calib=calib)
    assert len(build.graph.nodes(FxGate)) == 9
    off = _spike_counts_off(build, x)
    assert list(off) == ["lif1", "lif2", "lif3", "lif4", "lif5"]
    assert all(abs(v) <= TOLERANCE for v in off.values()), off


# ---------------------------------------------------------------- the fields themselves
def test_lowering_rounds_everywhere_and_the_fields_round_trip(digits):
    from snncompile.coproc.ops import Conv2d, Linear, SigmoidLUT
    from snncompile.ir import FxCoproc
    xtr, _, _, _ = digits
    build = compile_model(ROOT / "examples" / "checkpoints" /
                          "attention_digits_tcsa_causal.pt", "loihi2", calib=xtr[:32])
    gates = build.graph.nodes(FxGate)
    assert gates and all(g.rounding == "nearest_even" for g in gates)
    for node in build.graph.nodes(FxCoproc):
        cg = node.cgraph
        shifting = [op for op in cg.ops
                    if isinstance(op, (Linear, Conv2d, Mul, ReduceMean, SigmoidLUT))]
        assert shifting and all(op.rounding == "nearest_even" for op in shifting)
        assert all(op.weight_bits == 16 for op in cg.ops if isinstance(op, (Linear, Conv2d)))
        again = CoprocGraph.from_dict(*cg.to_dict())
        assert [(type(o).__name__, getattr(o, "rounding", None)) for o in again.ops] == \
            [(type(o).__name__, getattr(o, "rounding", None)) for o in cg.ops]
        assert "rnd" in cg.summary()


def test_a_graph_written_before_the_fields_loads_as_floor_and_int8():
    cg = CoprocGraph({"x": ValueSpec((2,), 16)},
                     [Mul("m", ("x", "x"), shift=3, rounding="nearest_even")], ["m"])
    doc, arrays = cg.to_dict()
    del doc["ops"][0]["fields"]["rounding"]
    old = CoprocGraph.from_dict(doc, arrays)
    assert old.ops[0].rounding == "floor"
    y = old.run_step({"x": np.array([[-5, 3]])})[0]["m"]
    assert y.tolist() == [[25 >> 3, 9 >> 3]]


@pytest.mark.parametrize("make, match", [
    (lambda: Mul("m", ("a", "b"), shift=8, rounding="up"), r"m: Mul rounding \('up'\)"),
    (lambda: Mul("m", ("a", "b"), shift=61, rounding="nearest_even"), r"m: Mul shift \(61\)"),
    (lambda: ReduceMean("r", ("a",), axes=(0,), rounding=1), r"r: ReduceMean rounding \(1\)"),
    (lambda: FxGate("g", rounding="half_up"), r"g: FxGate rounding \('half_up'\)"),
])
def test_bad_rounding_is_refused_in_one_line(make, match):
    from snncompile.errors import GraphError
    with pytest.raises(GraphError, match=match):
        make()


def test_weight_bits_bound_the_weights():
    from snncompile.coproc.ops import Linear
    from snncompile.errors import GraphError
    Linear("l", ("x",), weight=[[32767, -32768]], weight_bits=16)
    with pytest.raises(GraphError, match=r"l: Linear weight values \[-32768, 32767\] outside "
                                         r"\[-128, 127\]"):
        Linear("l", ("x",), weight=[[32767, -32768]])
    with pytest.raises(GraphError, match=r"l: Linear weight_bits \(17\) outside \[2, 16\]"):
        Linear("l", ("x",), weight=[[1]], weight_bits=17)
