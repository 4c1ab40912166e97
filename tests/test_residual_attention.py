"""Attention inside a residual block's body (issue 12, Att_Res_SNN style).

Two places in the body, both from the package's training layers:

* "inner": conv [+ batchnorm] -> attention -> lif inside the body, then the body's last
  synapse (the block layout of this issue: conv -> BN -> CSA -> LIF in the body);
* "end": the attention ends the body, on its last synapse's current, and its gated
  current adds to the shortcut's current in the lif after the block (where the released
  Att_Res_SNN BasicBlock puts its CSA, after the second conv + BN).

The attention runs on the co-processor as everywhere else (FxCoproc, FxGate chain). In
causal mode it answers in the same step; in window mode it adds T steps to the body,
so `ir.timing.balance` delays the shortcut by those T steps as well (synaptic delay for a
dense shortcut, T more relay stages for a conv one) and the network's added latency is T.

Checked: the float graph equals the training model; on random blocks (kind, mode, place,
dense or conv, shortcut) the integer reference, the simulator and Lava agree spike for
spike and on every co-processor value; the window delay is part of the path depth; a
B-like network (stem, block with CSA in the body, FC) compiles and verifies through the
CLI with 0 mismatches; what is not supported is refused in one line."""

import json

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hypothesis_profile import examples

from snncompile.backends.float_model import run_float
from snncompile.backends.sim import Simulator
from snncompile.errors import UnsupportedError
from snncompile.frontends import graph_from_model
from snncompile.ir import FxCoproc, FxGate
from snncompile.ir.timing import added_delay
from snncompile.nn import SNN, save_checkpoint
from snncompile.nn.attention import AttentionSNN
from snncompile.nn.checkpoint import load_checkpoint, model_class
from snncompile.pipeline import compile_model
from agreement import lava_equals_simulator as _lava_equals_simulator
from agreement import cli_compile_and_verify
from agreement import sim_equals_reference as _sim_equals_reference

STEPS = 8
LIF = {"type": "lif", "du": 0.3, "dv": 0.1, "vth": 0.5}
SLOW_OK = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow])
CONV_KINDS = ["ta", "ca", "sa", "tca", "tsa", "csa", "tcsa"]
DENSE_KINDS = ["ta", "ca", "tca"]          # SA needs a (C, H, W) current


def block_config(kind: str, mode: str, place: str = "inner", conv: bool = True,
                 shortcut: str = "synapse", bn: bool = False) -> dict:
    """stem synapse -> lif -> residual(body, shortcut) -> lif -> fc -> lif, with one
    attention layer in the body at `place` ("inner" or "end"); shortcut "synapse" (a 1x1
    conv or a dense layer) or "identity" (spikes added through identity synapses)."""
    def syn(name, kernel=3):
        layer = ({"type": "conv2d", "out": 4, "kernel": kernel, "padding": kernel // 2}
                 if conv else {"type": "dense", "out": 12})
        return [dict(layer, name=name)] + ([{"type": "batchnorm", "name": f"{name}.bn"}]
                                           if bn else [])
    att = [{"type": "attention", "kind": kind, "mode": mode, "window": 3, "t_ratio": 1,
            "c_ratio": 2, "kernel": 3, "gain_bits": 8, "name": "res.att"}]
    body = syn("res.conv1") + (att if place == "inner" else []) + \
        [dict(LIF, name="res.lif")] + syn("res.conv2") + (att if place == "end" else [])
    short = syn("res.short", kernel=1) if shortcut == "synapse" else []
    head = [{"type": "flatten"}] if conv else []
    return {"input": {"shape": [4, 6, 6] if conv else [12], "encoding": "spikes",
                      "steps": STEPS},
            "layers": syn("stem") + [dict(LIF, name="stem.lif"),
                                     {"type": "residual", "name": "res", "body": body,
                                      "shortcut": short},
                                     dict(LIF, name="res.out")] + head +
                      [{"type": "dense", "out": 3, "name": "fc"}, dict(LIF, name="out")]}


def block_model(cfg: dict, seed: int, gain: float = 2.0) -> AttentionSNN:
    torch.manual_seed(seed)
    model = AttentionSNN(cfg)
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(gain)
        for m in model.modules():            # batchnorm: non-trivial eval statistics
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.8, 1.5)
                m.bias.uniform_(-0.2, 0.3)
    return model.eval()


def _inputs(shape, seed, n):
    rng = np.random.default_rng(seed)
    calib = (rng.random((16, STEPS) + tuple(shape)) < 0.4).astype(np.int64)
    x = (rng.random((n, STEPS) + tuple(shape)) < 0.4).astype(np.int64)
    return calib, x


def compiled(cfg: dict, seed: int, n: int = 3):
    graph = graph_from_model(block_model(cfg, seed))
    calib, x = _inputs(graph.input_node().shape, seed, n)
    return compile_model(graph, "loihi2", calib=calib), x


blocks = st.one_of(
    st.tuples(st.sampled_from(CONV_KINDS), st.just(True)),
    st.tuples(st.sampled_from(DENSE_KINDS), st.just(False))).flatmap(
    lambda kc: st.fixed_dictionaries({
        "kind": st.just(kc[0]), "conv": st.just(kc[1]),
        "mode": st.sampled_from(["causal", "window"]),
        "place": st.sampled_from(["inner", "end"]),
        "shortcut": st.sampled_from(["synapse", "identity"]),
        "bn": st.booleans()}))


@settings(max_examples=examples(12), **SLOW_OK)
@given(blocks, st.integers(0, 2**16))
def test_float_graph_equals_the_training_model(case, seed):
    model = block_model(block_config(**case), seed)
    graph = graph_from_model(model)
    _, x = _inputs(graph.input_node().shape, seed, 3)
    with torch.no_grad():
        want = model(torch.as_tensor(x, dtype=torch.float32)).numpy()
    got = run_float(graph, x.astype(np.float32))
    assert np.array_equal(got["out"], want > 0)
    assert len(graph.inputs("res.out")) == 2
    if case["place"] == "end":             # the gated current adds to the shortcut's
        assert "res.att" in graph.inputs("res.out")


@settings(max_examples=examples(10), **SLOW_OK)
@given(blocks, st.integers(0, 2**16))
def test_reference_equals_simulator_on_random_blocks_with_attention(case, seed):
    build, x = compiled(block_config(**case), seed)
    g = build.graph
    assert g.nodes(FxCoproc) and g.nodes(FxGate)
    _sim_equals_reference(build, x)
    # the compiled kernels have no gate rule: gates and the partition step on their numpy
    # code inside the kernel path (kernels_plan._NumpyK), with the numpy path's integers
    sim = Simulator(g, kernel="numba")
    assert sim.kernel == "numba" and "step on their numpy code" in sim.kernel_reason
    a, b = Simulator(g, kernel="numpy").run(x), sim.run(x)
    assert b.kernel == "numba"
    for name in a.spikes:
        assert np.array_equal(a.spikes[name], b.spikes[name]), name
    for name in a.boundary:
        assert np.array_equal(a.boundary[name], b.boundary[name]), name
    assert a.counts == b.counts and a.overflow == b.overflow


@pytest.mark.lava
@settings(max_examples=examples(3), **SLOW_OK)
@given(blocks, st.integers(0, 2**16))
def test_lava_equals_simulator_on_random_blocks_with_attention(case, seed):
    _lava_equals_simulator(*compiled(block_config(**case), seed, n=2))


@pytest.mark.parametrize("conv", [True, False])
@pytest.mark.parametrize("place", ["inner", "end"])
def test_the_window_delay_is_part_of_the_path_the_shortcut_is_balanced_against(place, conv):
    """Window mode: the body is T steps deeper than in causal mode; the shortcut is
    delayed by exactly T more steps, and the build reports T steps of added latency."""
    kind = "csa" if conv else "ca"
    delays = {}
    for mode in ("causal", "window"):
        build, x = compiled(block_config(kind, mode, place, conv), 5)
        [d] = build.report["path_delays"]
        assert d["synapse"] == "res.short" and d["into"] == "res.out"
        delays[mode] = d["steps"]
        g = build.graph
        assert added_delay(g) == (STEPS if mode == "window" else 0)
        if mode == "window":
            assert build.report["partition"]["added_delay_steps"] == STEPS
            assert "Added latency per inference: 8 steps" in build.report_md
            if conv:    # Lava's Conv has no delays: one relay stage per step
                assert len(d["delay_neurons"]) == d["steps"]
            else:       # a dense shortcut takes the steps as synaptic delay
                assert g.node("res.short").align == d["steps"]
        _sim_equals_reference(build, x)
    assert delays["causal"] == 1                  # body: 2 synapses, shortcut: 1
    assert delays["window"] == 1 + STEPS


def _b_like(place: str, mode: str = "causal") -> dict:
    """Network B's layout at smoke size, with CSA in the block's body: stem conv ->
    avgpool 2 -> lif; a residual block (conv -> BN [-> CSA] -> lif -> conv -> BN [-> CSA];
    1x1 conv + BN shortcut) -> lif; sum pool 2; FC 11."""
    cfg = block_config("csa", mode, place, conv=True, bn=True)
    cfg["input"]["shape"] = [2, 12, 12]
    stem = [{"type": "conv2d", "out": 4, "kernel": 3, "padding": 1, "name": "stem"},
            {"type": "batchnorm", "name": "stem.bn"},
            {"type": "avgpool2d", "kernel": 2, "name": "stem.pool"}]
    layers = cfg["layers"]
    i = next(k for k, s in enumerate(layers) if s.get("name") == "stem.lif")
    cfg["layers"] = stem + layers[i:i + 3] + [
        {"type": "sumpool2d", "kernel": 2, "name": "pool"}, {"type": "flatten"},
        {"type": "dense", "out": 11, "name": "fc"}, dict(LIF, name="out")]
    return cfg


@pytest.mark.lava
@pytest.mark.parametrize("place, mode", [("inner", "causal"), ("end", "causal"),
                                         ("inner", "window")])
def test_b_like_network_with_csa_in_the_block_compiles_and_verifies(place, mode, tmp_path):
    """A checkpoint in network B's layout with CSA inside the residual block: compile for
    loihi2 and verify through the CLI; reference, simulator and Lava agree on every spike
    and every co-processor value (0 mismatches)."""
    from snncompile.data import save_inputs
    model = block_model(_b_like(place, mode), 7)
    save_checkpoint(model, tmp_path / "b.pt")
    assert model_class(load_checkpoint(tmp_path / "b.pt")[1]["config"]) is AttentionSNN
    rng = np.random.default_rng(7)
    x = (rng.random((19, STEPS, 2, 12, 12)) < 0.4).astype(np.int64)
    save_inputs(tmp_path / "cal.npz", x[:16], np.zeros(16, np.int64))
    save_inputs(tmp_path / "test.npz", x[16:], np.zeros(3, np.int64))
    err = cli_compile_and_verify(tmp_path, tmp_path / "b.pt", tmp_path / "cal.npz",
                                 tmp_path / "test.npz")
    assert "not charged" not in err, err   # the mapper charges the shortcut too
    mapping = json.loads((tmp_path / "b" / "mapping.json").read_text())
    fed = [n for n, l in mapping["layers"].items() if len(l.get("synapse_nodes", [])) > 1]
    assert fed and all(n.startswith("res") for n in fed), fed
    md = (tmp_path / "b" / "report.md").read_text()
    assert "Inserted path delays" in md and "res.att.coproc" in md


def test_a_checkpoint_with_attention_only_in_a_block_loads_as_an_attention_snn(tmp_path):
    cfg = block_config("ca", "causal", "inner")
    model = block_model(cfg, 1)
    save_checkpoint(model, tmp_path / "m.pt")
    back, _ = load_checkpoint(tmp_path / "m.pt")
    assert isinstance(back, AttentionSNN)
    x = torch.as_tensor(_inputs((4, 6, 6), 1, 2)[1], dtype=torch.float32)
    with torch.no_grad():
        assert torch.equal(back(x), model(x))


@pytest.mark.parametrize("edit, match", [
    # attention in the shortcut
    (lambda c: c["layers"][2]["shortcut"].append(
        {"type": "attention", "kind": "ca", "name": "s.att"}),
     "res: shortcut layer 1: type 'attention' is not supported in a residual block's "
     "shortcut"),
    # attention not after a synapse layer
    (lambda c: c["layers"][2]["body"].insert(2, {"type": "attention", "kind": "ca"}),
     "attention must sit between a synapse layer"),
])
def test_unsupported_attention_placements_are_refused_in_one_line(edit, match):
    cfg = block_config("ca", "causal", "inner")
    edit(cfg)
    with pytest.raises(UnsupportedError, match=match) as info:
        AttentionSNN(cfg)
    assert "\n" not in str(info.value)


def test_a_plain_snn_refuses_attention_in_a_block():
    with pytest.raises(UnsupportedError, match="type 'attention' is not supported in a "
                                               "residual block"):
        SNN(block_config("ca", "causal", "inner"))


def test_a_build_with_relay_stages_saves_and_loads(tmp_path):
    """`balance` inserts relay stages in front of a conv shortcut already in the graph, so
    the file's insertion order has the shortcut before its input; loading reorders."""
    from snncompile.ir import Graph
    from snncompile.ir.graph import graphs_equal
    build, _ = compiled(block_config("ca", "window", "inner"), 2, n=1)
    g = build.graph
    assert g.inputs("res.short") == [f"res.short.relay{STEPS}"]
    g.save(tmp_path)
    back = Graph.load(tmp_path)
    assert graphs_equal(g, back) and back.inputs("res.short") == g.inputs("res.short")


def nested_config(mode: str) -> dict:
    """`block_config` with a second block (identity shortcut) nested in the first one's
    body, after the attention's lif: res.conv1 -> CSA -> res.lif -> [inner block] ->
    inner.out -> res.conv2, + res.short."""
    cfg = block_config("csa", mode, "inner")
    body = cfg["layers"][2]["body"]
    conv = {"type": "conv2d", "out": 4, "kernel": 3, "padding": 1}
    inner = {"type": "residual", "name": "inner", "shortcut": [],
             "body": [dict(conv, name="inner.c1"), dict(LIF, name="inner.l1"),
                      dict(conv, name="inner.c2")]}
    i = next(k for k, s in enumerate(body) if s.get("name") == "res.lif")
    body[i + 1:i + 1] = [inner, dict(LIF, name="inner.out")]
    return cfg


@pytest.mark.parametrize("mode", ["causal", "window"])
def test_nested_blocks_with_attention(mode):
    """A block inside a block's body: the float graph equals the training model, the
    inner shortcut is balanced against the inner body, the outer shortcut against the
    whole outer body (window delay included), and reference == simulator."""
    model = block_model(nested_config(mode), 3)
    graph = graph_from_model(model)
    calib, x = _inputs(graph.input_node().shape, 3, 2)
    with torch.no_grad():
        want = model(torch.as_tensor(x, dtype=torch.float32)).numpy() > 0
    assert np.array_equal(run_float(graph, x.astype(np.float32))["out"], want)
    build = compile_model(graph, "loihi2", calib=calib)
    delays = {d["synapse"]: (d["into"], d["steps"]) for d in build.report["path_delays"]}
    # outer body: conv1, inner c1, c2, conv2 = 4 synapses; shortcut 1; window: + T
    assert delays == {"inner.shortcut": ("inner.out", 1),
                      "res.short": ("res.out", 3 + (STEPS if mode == "window" else 0))}
    _sim_equals_reference(build, x)


@pytest.mark.lava
def test_lava_equals_simulator_on_nested_blocks_with_window_attention():
    model = block_model(nested_config("window"), 4)
    graph = graph_from_model(model)
    calib, x = _inputs(graph.input_node().shape, 4, 2)
    _lava_equals_simulator(compile_model(graph, "loihi2", calib=calib), x)


def test_a_block_in_a_shortcut_is_refused_in_one_line():
    cfg = block_config("ca", "causal", "inner")
    cfg["layers"][2]["shortcut"] = [{"type": "residual", "body": [{"type": "conv2d",
                                                                   "out": 4, "kernel": 1}]},
                                    dict(LIF), {"type": "conv2d", "out": 4, "kernel": 1}]
    with pytest.raises(UnsupportedError, match="type 'residual' is not supported in a "
                                               "residual block's shortcut") as info:
        AttentionSNN(cfg)
    assert "\n" not in str(info.value)
