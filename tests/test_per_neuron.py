"""Per-channel / per-neuron du, dv and vth (issue 12: PLIF, the MA-SNN authors' trainable
leaks and thresholds): hand-worked values, reference == simulator (numpy and numba) ==
Lava on random per-neuron networks, element-wise quantisation and its report, the
training layer (`learn`, `per_channel`) equal to the float model, saved builds, and the
targets that cannot hold them (Loihi 1; netx export) refusing in one line."""
import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings

from hypothesis_profile import examples

from snncompile.backends.float_model import run_float
from snncompile.errors import GraphError, InputFileError, UnsupportedError
from snncompile.frontends.torch_checkpoint import graph_from_model
from snncompile.ir import LIF, Conv2d, Dense, FxDense, FxLIF, Graph, Input, Output, per_neuron
from snncompile.ir.limits import check_fixed_graph
from snncompile.nn.layers import SNN, LIFLayer
from snncompile.passes.quantize import quantize
from snncompile.target import load_target

from strategies import assert_lava_equals_simulator, fixed_networks
from test_neuron_options import all_backends

FAST = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow])


def three_neurons(reset="zero", fire_at=">"):
    """Three neurons fed 48 << 6 per step (du = 4095: u is this step's input; dv = 0) with
    thresholds 64, 32, 16 (units of 64)."""
    return Graph.sequential([
        Input("in", shape=(1,)),
        FxDense("fc", weight=np.array([[48], [48], [48]]), sign_mode="excitatory"),
        FxLIF("lif", shape=(3,), du=4095, dv=0, vth=np.array([64, 32, 16]), reset=reset,
              fire_at=fire_at),
        Output("o")])


# v per step (units of 64): +48.  vth 64: 48, 96 (spike) ... every other step;
# vth 32: 48 (spike) every step; vth 16: every step.  Subtract: vth 64 -> v 48, 96 -> 32,
# 80 -> 16, 64 (no spike, > only) -> 112 -> 48 ...: 0 1 1 0 1 1 1 0
HAND = {"zero": [[0, 1, 0, 1, 0, 1], [1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1]],
        "subtract": [[0, 1, 1, 0, 1, 1], [1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1]]}


@pytest.mark.parametrize("reset", sorted(HAND))
def test_hand_worked_per_neuron_thresholds_on_every_backend(reset):
    ref, states = all_backends(three_neurons(reset), np.ones((1, 6, 1), np.int64))
    assert ref["lif"][0].T.astype(int).tolist() == HAND[reset]
    if reset == "subtract":   # vth 32: 48 - 32 = 16, 16 + 48 - 32 = 32, then 48 (units of 64)
        assert states["lif"][1][0, :3, 1].tolist() == [16 * 64, 32 * 64, 48 * 64]


def test_threshold_reset_sets_each_neurons_own_threshold():
    _, states = all_backends(three_neurons("threshold", ">="), np.ones((1, 3, 1), np.int64))
    assert states["lif"][1][0, 2].tolist() == [64 * 64, 32 * 64, 16 * 64]


@settings(max_examples=examples(40), **FAST)
@given(fixed_networks(neuron_options=True, per_neuron=True))
def test_reference_equals_simulator_numpy_and_numba_per_neuron(case):
    graph, x = case
    all_backends(graph, x)


@pytest.mark.lava
@settings(max_examples=examples(6), **FAST)
@given(fixed_networks(conv=None, max_layers=2, neuron_options=True, per_neuron=True))
def test_lava_per_neuron_lif_equals_simulator(case):
    assert_lava_equals_simulator(case)


@pytest.mark.lava
def test_lava_hand_worked_per_neuron_thresholds():
    from snncompile.backends.lava.run import run_lava
    for reset, want in HAND.items():
        got = run_lava(three_neurons(reset), np.ones((1, 6, 1), np.int64)).spikes["lif"]
        assert got[0].T.astype(int).tolist() == want, reset


def test_node_checks_the_shape_and_the_values():
    LIF("a", shape=(2, 3, 3), du=np.array([0.1, 0.2]).reshape(2, 1, 1))
    with pytest.raises(GraphError, match="a: LIF du of shape \\(2,\\) does not broadcast"):
        LIF("a", shape=(2, 3, 3), du=np.array([0.1, 0.2]))    # per channel is (C, 1, 1)
    with pytest.raises(GraphError, match="b: FxLIF vth must hold integers"):
        FxLIF("b", shape=(2,), vth=np.array([1.5, 2.0]))
    with pytest.raises(GraphError, match="finite"):
        LIF("c", shape=(2,), vth=np.array([1.0, np.nan]))


def test_saved_build_keeps_the_arrays(tmp_path):
    g = three_neurons("subtract")
    g.save(tmp_path)
    lif = Graph.load(tmp_path).node("lif")
    assert lif.vth.tolist() == [64, 32, 16] and lif.du == 4095
    assert lif.summary().startswith("du=4095 dv=0 vth=[16..64]")


def test_range_check_of_a_build_covers_every_element():
    g = three_neurons()
    g.node("lif").vth = np.array([64, 32, 1 << 17])
    with pytest.raises(InputFileError, match="node 'lif': vth \\(131072\\) outside"):
        check_fixed_graph(g, load_target("loihi2").numerics)


# ---------------------------------------------------------------- quantisation
def float_graph(du, dv, vth, conv=False):
    rng = np.random.default_rng(0)
    if conv:
        syn = Conv2d("conv", weight=rng.normal(0, .5, (3, 1, 3, 3)).astype(np.float32),
                     padding=(1, 1))
        shape, ins = (3, 5, 5), (1, 5, 5)
    else:
        syn = Dense("fc", weight=rng.normal(0, .5, (3, 4)).astype(np.float32))
        shape, ins = (3,), (4,)
    return Graph.sequential([Input("in", shape=ins), syn,
                             LIF("lif", shape=shape, du=du, dv=dv, vth=vth), Output("o")])


def test_quantisation_is_per_element_at_one_scale_and_reported_as_ranges():
    du = np.array([0.1, 0.5, 1.0]).reshape(3, 1, 1)
    vth = np.array([0.5, 1.0, 2.0]).reshape(3, 1, 1)
    fixed, reps = quantize(float_graph(du, 0.25, vth, conv=True), load_target("loihi2"))
    lif, rep = fixed.node("lif"), reps[0]
    assert lif.du.ravel().tolist() == [round(0.1 * 4096) - 1, 2047, 4095]
    assert lif.dv == 1024                                   # one value stays a scalar
    assert lif.vth.ravel().tolist() == [round(t * rep.scale) for t in (0.5, 1.0, 2.0)]
    assert lif.vth.max() <= load_target("loihi2").numerics.vth_max
    assert rep.du == "409..4095" and rep.dv == 1024
    assert rep.vth == f"{lif.vth.min()}..{lif.vth.max()}"
    assert per_neuron(lif)


def test_uniform_arrays_quantise_to_scalars():
    fixed, _ = quantize(float_graph(np.full(3, 0.2), 0.1, np.full(3, 1.0)),
                        load_target("loihi2"))
    lif = fixed.node("lif")
    assert isinstance(lif.du, int) and isinstance(lif.vth, int)


def test_compiled_per_neuron_layer_keeps_the_float_spikes():
    g = float_graph(np.array([0.05, 0.3, 1.0]), np.array([0.0, 0.1, 0.5]),
                    np.array([0.4, 0.8, 1.6]))
    rng = np.random.default_rng(1)
    x = (rng.random((4, 30, 4)) < .5).astype(np.int64)
    fixed, _ = quantize(g, load_target("loihi2"))
    ref, _ = all_backends(fixed, x)
    want = run_float(g, x.astype(np.float32))["lif"]
    assert ref["lif"].sum() > 50
    assert np.mean(ref["lif"] != want) < 0.02


def test_loihi1_refuses_per_neuron_parameters_in_one_line():
    l1 = load_target("loihi1")
    with pytest.raises(UnsupportedError, match="lif: per-neuron du/dv/vth need programmable "
                       "neurons; target loihi1"):
        quantize(float_graph(np.array([0.1, 0.2, 0.3]), 0.1, 1.0), l1)
    quantize(float_graph(np.full(3, 0.1), 0.1, 1.0), l1)     # uniform: one profile
    with pytest.raises(InputFileError, match="node 'lif': per-neuron du/dv/vth"):
        check_fixed_graph(three_neurons(), l1.numerics)


# ---------------------------------------------------------------- training layer
CONFIG = {"input": {"shape": [1, 6, 6], "encoding": "spikes"}, "layers": [
    {"type": "conv2d", "out": 3, "kernel": 3, "padding": 1},
    {"type": "lif", "du": 0.2, "dv": 0.1, "vth": 0.5, "learn": ["du", "dv", "vth"],
     "per_channel": True, "reset": "subtract"},
    {"type": "flatten"}, {"type": "dense", "out": 5},
    {"type": "lif", "du": 0.3, "dv": 0.05, "vth": 0.5, "learn": ["vth"], "per_neuron": True,
     "fire_at": ">="},
    {"type": "dense", "out": 3},
    {"type": "lif", "du": 0.3, "dv": 0.05, "vth": 0.5, "learn": ["du"]}]}


def trained_model(seed=0):
    """The config's model with its weights scaled up and its learned parameters moved off
    their initial values (as training would)."""
    torch.manual_seed(seed)
    model = SNN(CONFIG)
    with torch.no_grad():
        model.layers[0].module.weight.mul_(3)
        for p in (p for n, p in model.named_parameters() if ".learn_" in n):
            p.add_(torch.rand_like(p) * 0.4 - 0.1)
    return model


def layer_spikes(model, x):
    """Each LIFLayer's spikes in the training model (forward hooks)."""
    out, hooks = [], [m.register_forward_hook(lambda m, i, o: out.append(o.numpy() > 0))
                      for m in model.layers if isinstance(m, LIFLayer)]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in hooks:
            h.remove()
    return out


def test_learned_parameters_have_the_asked_shapes_and_gradients():
    model = trained_model()
    shapes = {n: tuple(p.shape) for n, p in model.named_parameters() if ".learn_" in n}
    assert shapes == {"layers.1.learn_du": (3, 1, 1), "layers.1.learn_dv": (3, 1, 1),
                      "layers.1.learn_vth": (3, 1, 1), "layers.4.learn_vth": (5,),
                      "layers.6.learn_du": (1,)}
    x = (torch.rand(2, 8, 1, 6, 6) < .5).float()
    model(x).sum().backward()
    assert model.layers[1].learn_du.grad.abs().sum() > 0
    with pytest.raises(UnsupportedError, match="learn"):
        LIFLayer((2,), 0.1, 0.1, learn=("tau",))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_float_model_equals_training_layer(seed):
    model = trained_model(seed)
    graph = graph_from_model(model)
    lifs = graph.nodes(LIF)
    assert per_neuron(lifs[0]) and per_neuron(lifs[1]) and not per_neuron(lifs[2])
    x = (torch.rand(4, 12, 1, 6, 6, generator=torch.Generator().manual_seed(seed)) < .4)
    x = x.float()
    want = layer_spikes(model, x)
    got = run_float(graph, x.numpy())
    assert sum(w.sum() for w in want) > 100
    for node, w in zip(lifs, want):
        assert np.array_equal(got[node.name], w), node.name


def test_checkpoint_round_trip_keeps_the_learned_values(tmp_path):
    from snncompile.nn import load_checkpoint, save_checkpoint
    model = trained_model()
    save_checkpoint(model, tmp_path / "m.pt")
    again = graph_from_model(load_checkpoint(tmp_path / "m.pt")[0])
    for a, b in zip(graph_from_model(model).nodes(LIF), again.nodes(LIF)):
        assert a.same_as(b)


# ---------------------------------------------------------------- export
def test_nir_export_round_trip_keeps_per_neuron_values(tmp_path):
    from snncompile.formats.nir import write_nir
    from snncompile.formats.nir.read import import_nir
    du = np.array([0.1, 0.5, 1.0]).reshape(3, 1, 1)
    dv = np.array([0.0, 0.05, 0.2]).reshape(3, 1, 1)
    vth = np.array([0.5, 1.0, 2.0]).reshape(3, 1, 1)
    graph = float_graph(du, dv, vth, conv=True)
    write_nir(graph, tmp_path / "pn.nir", dt=1e-3)
    back = import_nir(tmp_path / "pn.nir", dt=1e-3).node("lif")
    for f, want in (("du", du), ("dv", dv), ("vth", vth)):
        np.testing.assert_allclose(np.broadcast_to(getattr(back, f), (3, 5, 5)),
                                   np.broadcast_to(want, (3, 5, 5)), rtol=1e-6, atol=1e-9)
    x = (np.random.default_rng(2).random((2, 15, 1, 5, 5)) < .5).astype(np.float32)
    assert np.array_equal(run_float(graph, x)["lif"],
                          run_float(import_nir(tmp_path / "pn.nir", dt=1e-3), x)["lif"])


def test_netx_export_refuses_per_neuron_parameters_in_one_line(tmp_path):
    from snncompile.formats.netx.write import export_netx
    g = three_neurons()
    with pytest.raises(UnsupportedError, match="lif: per-neuron du/dv/vth .* cannot be "
                       "written to netx"):
        export_netx(g, tmp_path / "x.net")


# ---------------------------------------------------------------- mapping
def test_loihi2_charges_per_neuron_parameters_to_the_shared_memory():
    """Loihi 2 keeps neuron state in the synapse memory (neuron_state_bits per neuron):
    per-neuron dv and vth add decay_bits + vth_mant_bits (12 + 17) bits per neuron."""
    from snncompile.mapping.split import param_state_bits, split_graph
    l2 = load_target("loihi2")

    def net(vth):
        w = np.ones((300, 20), np.int32) * 2
        return Graph.sequential([Input("in", shape=(20,)), FxDense("fc", weight=w),
                                 FxLIF("lif", shape=(300,), du=10, dv=np.arange(300) % 7,
                                       vth=vth), Output("o")])
    per = net(np.arange(300) + 1)
    assert param_state_bits(per.node("lif"), l2) == 12 + 17
    assert param_state_bits(net(5).node("lif"), l2) == 12        # only dv differs
    bits = {k: sum(b.usage["synapse_bits"] for b in split_graph(g, l2).blocks
                   if b.layer == "lif") for k, g in (("per", per), ("one", net(5)))}
    assert bits["per"] - bits["one"] == 300 * 17


# ---------------------------------------------------------------- builds, CLI
def test_build_with_a_misshapen_or_fractional_array_is_refused(tmp_path):
    g = three_neurons()
    doc, arrays = g.to_dict()
    for bad, match in ((np.array([64, 32]), "does not broadcast"),
                       (np.array([64.0, 32.5, 16.0]), "must hold integers")):
        arrays["lif/vth"] = bad
        with pytest.raises(InputFileError, match=f"lif: FxLIF vth .*{match}"):
            Graph.from_dict(doc, arrays)


def test_cli_compile_reports_ranges_and_verify_agrees(tmp_path, capsys):
    from snncompile.cli import main
    from snncompile.data import save_inputs
    from snncompile.nn import save_checkpoint
    save_checkpoint(trained_model(), tmp_path / "pn.pt")
    rng = np.random.default_rng(1)
    x = (rng.random((6, 10, 1, 6, 6)) < .4).astype(np.uint8)
    save_inputs(tmp_path / "in.npz", x, rng.integers(0, 3, 6))
    assert main(["compile", str(tmp_path / "pn.pt"), "--calib", str(tmp_path / "in.npz"),
                 "-o", str(tmp_path / "b"), "--quiet"]) == 0
    md = (tmp_path / "b" / "report.md").read_text()
    row = next(line for line in md.splitlines() if line.startswith("| lif1  | conv"))
    assert row.count("..") == 3, row        # vth and du/dv ranges of the per-channel layer
    capsys.readouterr()
    assert main(["verify", str(tmp_path / "b"), "--inputs", str(tmp_path / "in.npz"),
                 "--backends", "reference,sim"]) == 0
    assert "EQUIVALENT: 0 mismatching spikes" in capsys.readouterr().out
