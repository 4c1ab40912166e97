"""Recurrent layers: a layer's spikes back into its own neurons through a recurrent dense
synapse (RecDense / FxRecDense), one step later as a Dense on Loihi delivers them:
x_t = W_in s_in,t + W_rec s_(t-1). The integer reference steps the recurrence in local
time, the simulator and Lava run it in global time (Lava: a Dense from the LIF's s_out
back into its a_in); all three must agree spike for spike. The training layer
(`{"type": "lif", "recurrent": true}`) and the float model compute the same network."""
import numpy as np
import pytest
import torch
from hypothesis import assume, given, settings, strategies as st

from hypothesis_profile import examples

from snncompile.backends.float_model import run_float
from snncompile.backends.reference import reference_run
from snncompile.backends.sim import Simulator
from snncompile.energy.run import energy_report
from snncompile.errors import GraphError, UnsupportedError
from snncompile.frontends.torch_checkpoint import graph_from_model
from snncompile.ir import FxDense, FxLIF, FxRecDense, Graph, Input, Output, RecDense
from snncompile.ir.graph import graphs_equal
from snncompile.mapping.place import map_graph
from snncompile.nn import SNN, save_checkpoint
from snncompile.nn.layers import LIFLayer, RecurrentLIFLayer
from snncompile.pipeline import compile_model
from snncompile.target import load_target

from strategies import recurrent_networks


def _one_neuron(rec_weight: int) -> Graph:
    """in -> fc (200) -> lif (no memory: du = dv = 4095, vth 100) with a recurrent synapse
    of weight `rec_weight` from the neuron to itself."""
    g = Graph()
    g.add(Input("in", shape=(1,)))
    g.add(FxDense("fc", weight=np.array([[200]], np.int32)), ["in"])
    g.add_delay(FxRecDense("rec", weight=np.array([[rec_weight]], np.int32)), (1,))
    g.add(FxLIF("lif", shape=(1,), du=4095, dv=4095, vth=100), ["fc", "rec"])
    g.connect("lif", "rec")
    g.add(Output("out"), ["lif"])
    return g


def _pulse(steps: int) -> np.ndarray:
    x = np.zeros((1, steps, 1), np.int64)
    x[0, 0, 0] = 1
    return x


HAND_CASES = [
    # one input spike at step 0; a self-excitation of 200 keeps the neuron firing from the
    # step after each spike on; without it, it fires once
    (200, _pulse(6), [1, 1, 1, 1, 1, 1]),
    (0, _pulse(6), [1, 0, 0, 0, 0, 0]),
    # input at every step; self-inhibition (-254) arrives one step after each spike and
    # silences the next step: every other step
    (-254, np.ones((1, 6, 1), np.int64), [1, 0, 1, 0, 1, 0]),
]


@pytest.mark.parametrize("rec_weight, x, want", HAND_CASES)
def test_the_recurrence_arrives_one_step_later(rec_weight, x, want):
    g = _one_neuron(rec_weight)
    want = np.array(want, bool).reshape(1, -1, 1)
    assert np.array_equal(reference_run(g, x)["lif"], want)
    assert np.array_equal(Simulator(g, kernel="numpy").run(x).spikes["lif"], want)
    assert np.array_equal(Simulator(g, kernel="numba").run(x).spikes["lif"], want)


@pytest.mark.lava
@pytest.mark.parametrize("rec_weight, x, want", HAND_CASES[::2])
def test_lava_recurrence_arrives_one_step_later(rec_weight, x, want):
    from snncompile.backends.lava.run import run_lava
    x2 = np.concatenate([x, x])       # two samples: one Lava run each, nothing carried over
    lava = run_lava(_one_neuron(rec_weight), x2)
    assert np.array_equal(lava.spikes["lif"], np.array([want, want], bool)[..., None])


def test_simulator_runs_recurrent_graphs_on_the_kernels():
    """FxRecDense has a compiled kernel (computed step by step with its LIF layer,
    kernels.lif_rec); tests/test_sim_kernel.py compares it with the numpy path."""
    sim = Simulator(_one_neuron(200), kernel="numba")
    assert sim.kernel == "numba", sim.kernel_reason
    assert sim.run(_pulse(6)).kernel == "numba"


@settings(max_examples=examples(40), deadline=None)
@given(recurrent_networks(neuron_options=True))
def test_simulator_equals_reference_on_random_recurrent_graphs(case):
    graph, x = case
    ref = reference_run(graph, x)
    res = Simulator(graph).run(x, batch_size=3)
    for name in ref:
        assert np.array_equal(res.spikes[name], ref[name]), name


@pytest.mark.lava
@settings(max_examples=examples(4), deadline=None)
@given(recurrent_networks(max_layers=2, neuron_options=True))
def test_lava_equals_reference_on_random_recurrent_graphs(case):
    from snncompile.backends.lava.run import run_lava
    graph, x = case
    x = x[:2, :6]
    ref = reference_run(graph, x)
    lava = run_lava(graph, x)
    for name in ref:
        assert np.array_equal(lava.spikes[name], ref[name]), name


# ------------------------------------------------------------------ the graph
def test_recurrent_graph_round_trips_and_orders_the_back_edge_after_its_layer():
    g = _one_neuron(200)
    assert g.order() == ["in", "fc", "lif", "rec", "out"]
    assert g.depth("lif") == 1          # the back edge does not deepen its layer
    doc, arrays = g.to_dict()
    assert graphs_equal(Graph.from_dict(doc, arrays), g)


def test_a_recurrent_synapse_must_feed_the_layer_it_reads():
    g = Graph()
    g.add(Input("in", shape=(2,)))
    g.add(FxDense("fc", weight=np.full((2, 2), 100, np.int32)), ["in"])
    g.add(FxLIF("a", shape=(2,), vth=10), ["fc"])
    g.add_delay(FxRecDense("rec", weight=np.zeros((2, 2), np.int32)), (2,))
    g.add(FxLIF("b", shape=(2,), vth=10), ["rec"])
    g.connect("a", "rec")
    g.add(Output("out"), ["b"])
    with pytest.raises(GraphError, match="rec: a recurrent synapse must feed the one neuron "
                                         "layer it reads"):
        g.validate()


def test_a_recurrent_synapse_is_square():
    with pytest.raises(GraphError, match="must be square"):
        FxRecDense("rec", weight=np.zeros((2, 3), np.int32))
    with pytest.raises(GraphError, match="must be square"):
        RecDense("rec", weight=np.zeros((3,), np.float32))


# ------------------------------------------------------------------ training layer
LIF = {"type": "lif", "du": 0.3, "dv": 0.2, "vth": 1.0}


def _cfg(width: int, recurrent: tuple[bool, ...]):
    layers = []
    for i, rec in enumerate(recurrent):
        out = 4 if i == len(recurrent) - 1 else width
        layers += [{"type": "dense", "out": out}, dict(LIF, name=f"lif{i}", recurrent=rec)]
    return {"input": {"shape": [10]}, "layers": layers}


def _model(cfg, seed, gain=2.5, rec_gain=1.5):
    torch.manual_seed(seed)
    model = SNN(cfg)
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.mul_(rec_gain if name.endswith("rec.weight") else gain)
    return model


def _layer_spikes(model, x) -> dict:
    """Every LIF layer's spikes of the training model on x (forward hooks)."""
    got = {}
    hooks = [layer.register_forward_hook(lambda m, a, y, n=name: got.__setitem__(n, y))
             for name, layer in zip(model.names, model.layers) if isinstance(layer, LIFLayer)]
    try:
        with torch.no_grad():
            model(torch.as_tensor(x, dtype=torch.float32))
    finally:
        for h in hooks:
            h.remove()
    return {k: v.numpy() > 0 for k, v in got.items()}


def test_training_layer_recurrence_is_one_step_late():
    """By hand: one neuron, no input after step 0, self-excitation above threshold."""
    layer = RecurrentLIFLayer((1,), du=1.0, dv=1.0, vth=1.0)
    with torch.no_grad():
        layer.rec.weight.fill_(2.0)
    x = torch.zeros((1, 5, 1))
    x[0, 0, 0] = 2.0
    assert layer(x)[0, :, 0].tolist() == [1.0, 1.0, 1.0, 1.0, 1.0]
    with torch.no_grad():
        layer.rec.weight.fill_(0.5)
    assert layer(x)[0, :, 0].tolist() == [1.0, 0.0, 0.0, 0.0, 0.0]


@settings(max_examples=examples(10), deadline=None)
@given(st.lists(st.booleans(), min_size=1, max_size=3), st.integers(0, 2**16))
def test_float_graph_equals_training_layer_on_random_recurrent_models(recurrent, seed):
    model = _model(_cfg(12, tuple(recurrent)), seed)
    x = (np.random.default_rng(seed).random((3, 10, 10)) < 0.5).astype(np.float32)
    graph = graph_from_model(model)
    assert sorted(n for n in graph.order() if isinstance(graph.node(n), RecDense)) == \
        [f"lif{i}.rec" for i, r in enumerate(recurrent) if r]
    want = _layer_spikes(model, x)
    fired = sum(int(v.sum()) for v in want.values())
    # a drawn model that never fires (seen once: one layer, seed 8367) would make the
    # equality below vacuous: such draws are discarded (Hypothesis fails the test when too
    # many are), the others must fire and agree
    assume(fired > 0)
    got = run_float(graph, x)
    for name in want:
        assert np.array_equal(got[name], want[name]), name
    assert fired > 0   # something fired


@pytest.mark.parametrize("cfg", [
    {"input": {"shape": [2, 4, 4]}, "layers": [{"type": "conv2d", "out": 2, "kernel": 1},
                                               dict(LIF, recurrent=True)]},
    {"input": {"shape": [4]}, "layers": [{"type": "dense", "out": 4},
                                         dict(LIF, recurrent="yes")]},
])
def test_malformed_recurrent_layers_are_refused(cfg):
    with pytest.raises(UnsupportedError, match="lif1: .*recurrent"):
        SNN(cfg)


# ------------------------------------------------------------------ compiled end to end
@pytest.fixture(scope="module")
def build(tmp_path_factory):
    path = tmp_path_factory.mktemp("rec") / "rec.pt"
    save_checkpoint(_model(_cfg(12, (True, True)), 5), path)
    rng = np.random.default_rng(5)
    calib = (rng.random((32, 10, 10)) < 0.4).astype(np.int64)
    return compile_model(path, "loihi2", calib=calib)


def _inputs(n=3, steps=10, seed=6):
    return (np.random.default_rng(seed).random((n, steps, 10)) < 0.4).astype(np.int64)


def test_compiled_recurrent_model_is_faithful_and_backends_agree(build):
    g = build.graph
    assert isinstance(g.node("lif0.rec"), FxRecDense) and g.inputs("lif0.rec") == ["lif0"]
    assert build.report["fidelity"]["warnings"] == []
    x = _inputs()
    ref = reference_run(g, x)
    sim = Simulator(g).run(x)
    assert all(np.array_equal(sim.spikes[k], ref[k]) for k in ref)
    assert ref["lif0"].sum() > 0 and ref["lif1"].sum() > 0


def test_recurrent_synapse_shares_the_lif_scale_with_its_own_exponent(build):
    """The quantiser's report lists the recurrent synapse with the layer's feed-forward
    one; its mantissas x 2**exponent are the float weights x the layer's scale."""
    rep = next(r for r in build.report["quantization"] if r["layer"] == "lif0")
    extra = {m["synapse"]: m for m in rep["more_synapses"]}
    assert set(extra) == {"lif0.rec"}
    node = build.graph.node("lif0.rec")
    assert node.weight_exp == extra["lif0.rec"]["weight_exp"]
    w_float = build.float_graph.node("lif0.rec").weight
    step = 2.0 ** node.weight_exp * (2 if node.sign_mode == "mixed" else 1)
    err = np.abs(node.weight * 2.0 ** node.weight_exp - w_float * rep["scale"])
    assert err.max() <= step / 2 + 1e-6


def test_recurrent_synops_are_priced_with_their_layer(build):
    x = _inputs(n=2)
    report, mapping = energy_report(build, x)
    counts = Simulator(build.graph).run(x).counts
    for layer, fc in (("lif0", "dense1"), ("lif1", "dense2")):
        want = (counts[fc]["synops"] + counts[f"{layer}.rec"]["synops"]) / len(x)
        assert report.events[layer]["synops"] == pytest.approx(want)
        assert counts[f"{layer}.rec"]["synops"] > 0
        cores = {mapping.core_of_block[i] for i, b in enumerate(mapping.blocks)
                 if b.layer == layer}
        assert len(cores) == 1, cores
    # lif1 (the output) sends messages only to itself, through its recurrent synapses
    assert mapping.layer_traffic["lif1"]["messages"] == int(
        (build.graph.node("lif1.rec").weight != 0).any(0).sum())


def test_a_recurrent_layer_larger_than_a_core_is_refused():
    n = 1100                              # loihi1: 1024 compartments per core
    g = Graph()
    g.add(Input("in", shape=(4,)))
    g.add(FxDense("fc", weight=np.full((n, 4), 2, np.int32)), ["in"])
    g.add_delay(FxRecDense("rec", weight=np.eye(n, dtype=np.int32) * 2), (n,))
    g.add(FxLIF("lif", shape=(n,), vth=10), ["fc", "rec"])
    g.connect("lif", "rec")
    g.add(Output("out"), ["lif"])
    with pytest.raises(UnsupportedError, match=r"lif: a recurrent layer needs 2 cores"):
        map_graph(g, load_target("loihi1"))


@pytest.mark.lava
def test_compiled_recurrent_model_lava_equals_reference(build):
    from snncompile.backends.lava.run import run_lava
    x = _inputs(n=2, steps=6)
    ref, lava = reference_run(build.graph, x), run_lava(build.graph, x)
    for k in ref:
        assert np.array_equal(lava.spikes[k], ref[k]), k


# ------------------------------------------------------------------ netx dense_rec
def _slayer_recurrent_file(path, seed=0):
    """slayer's cuba.Recurrent (exported as netx `dense_rec`) then a cuba.Dense readout."""
    slayer = pytest.importorskip("lava.lib.dl.slayer")
    from netx_files import export_blocks
    neuron = {"threshold": 1.25, "current_decay": 0.25, "voltage_decay": 0.03,
              "requires_grad": False}
    torch.manual_seed(seed)
    blocks = [slayer.block.cuba.Recurrent(neuron, 10, 8, weight_scale=4, weight_norm=False),
              slayer.block.cuba.Dense(neuron, 8, 3, weight_scale=4, weight_norm=False)]
    export_blocks(blocks, path, (torch.rand(1, 10, 4) < 0.3).float())
    import h5py
    with h5py.File(path, "a") as f:           # an excitatory readout, so that it fires
        f["layer/1/weight"][...] = np.minimum(np.abs(f["layer/1/weight"][()]) * 3, 250)


def test_netx_dense_rec_imports_as_a_recurrent_layer(tmp_path):
    from snncompile.formats.netx.read import import_netx
    path = tmp_path / "rec.net"
    _slayer_recurrent_file(path)
    g = import_netx(path)
    assert g.order() == ["input", "L0_dense", "L0_lif", "L0_rec", "L1_dense", "L1_lif",
                         "output"]
    rec, ff = g.node("L0_rec"), g.node("L0_dense")
    assert isinstance(rec, FxRecDense) and rec.weight.shape == (8, 8)
    assert rec.weight_exp == ff.weight_exp and rec.num_weight_bits == ff.num_weight_bits
    x = (np.random.default_rng(1).random((2, 15, 10)) < 0.4).astype(np.int64)
    ref = reference_run(g, x)
    assert all(np.array_equal(Simulator(g).run(x).spikes[k], ref[k]) for k in ref)
    rec.weight = np.zeros_like(rec.weight)     # the recurrence changes what the layer does
    assert not np.array_equal(reference_run(g, x)["L0_lif"], ref["L0_lif"])


def test_netx_dense_rec_with_delays_is_refused(tmp_path):
    import h5py
    from snncompile.formats.netx.read import import_netx
    path = tmp_path / "rec.net"
    _slayer_recurrent_file(path)
    with h5py.File(path, "a") as f:
        f["layer/0"].create_dataset("delay", data=np.full(8, 2))
    with pytest.raises(UnsupportedError, match="layer 0.*dense_rec layer with synaptic delays"):
        import_netx(path)


@pytest.mark.lava
def test_netx_dense_rec_matches_netx_in_lava(tmp_path):
    """lava-dl's own loader (netx RecurrentDense: a second Lava Dense from s_out into
    a_in) in Lava against our simulator and our Lava lowering, spike for spike."""
    from snncompile.backends.lava.run import run_lava
    from snncompile.formats.netx.read import import_netx
    from snncompile.formats.netx.run_lava import run_netx
    path = tmp_path / "rec.net"
    _slayer_recurrent_file(path)
    g = import_netx(path)
    x = (np.random.default_rng(1).random((15, 10)) < 0.4).astype(np.uint8)
    ours = Simulator(g).run(x[None]).spikes
    netx = run_netx(path, g, x)
    lava = run_lava(g, x[None].astype(np.int64)).spikes
    assert set(netx) == {"L0_lif", "L1_lif"}
    for k, spikes in netx.items():
        assert np.array_equal(ours[k][0], spikes), k
        assert np.array_equal(lava[k], ours[k]), k
    assert netx["L0_lif"].sum() > 10 and netx["L1_lif"].sum() > 0


# ------------------------------------------------------------------ NIR (snnTorch RLeaky)
def _snntorch_rleaky(path):
    """A Linear -> RLeaky -> Linear -> Leaky network in snnTorch 1.0.0, exported with its
    own export_to_nir (which writes the RLeaky as `1.lif` <-> `1.w_rec`, an Affine) and
    written to `path`. reset_delay=False: snnTorch's default (True) zeroes the whole next
    step of an RLeaky after a spike, input included, which no Loihi neuron computes."""
    snn = pytest.importorskip("snntorch")
    nir = pytest.importorskip("nir")
    from unittest import mock
    from snntorch.export_nir import export_to_nir
    torch.manual_seed(0)
    leaky = dict(beta=0.9, init_hidden=True, reset_mechanism="zero")
    net = torch.nn.Sequential(torch.nn.Linear(10, 12),
                              snn.RLeaky(linear_features=12, reset_delay=False, **leaky),
                              torch.nn.Linear(12, 4), snn.Leaky(output=True, **leaky))
    with torch.no_grad():
        for p in net.parameters():
            p.mul_(2.0)
    # export_to_nir's last call, infer_types, fails on its own graphs with nir 1.0.8 (see
    # tests/test_nir_exporters.py); its 0-d parameters need an uncompressed write
    with mock.patch.object(nir.NIRGraph, "infer_types", lambda self: None):
        g = export_to_nir(net, torch.zeros(1, 10))
    try:
        nir.write(path, g)
    except TypeError:
        nir.write(path, g, compression=None)
    return net


def _snntorch_spikes(net, x):
    from snntorch import utils
    out = {1: [], 3: []}
    hooks = [net[i].register_forward_hook(
        lambda m, a, y, i=i: out[i].append(y[0] if isinstance(y, tuple) else y))
        for i in out]
    utils.reset(net)
    try:
        with torch.no_grad():
            for t in range(x.shape[1]):
                net(torch.as_tensor(x[:, t], dtype=torch.float32))
    finally:
        for h in hooks:
            h.remove()
    return {"1.lif": torch.stack(out[1], 1).numpy() > 0,
            "3": torch.stack(out[3], 1).numpy() > 0}


@pytest.mark.filterwarnings(  # snnTorch's exporter calls it
    "ignore:nirtorch.extract_nir_graph is being deprecated:DeprecationWarning")
def test_snntorch_rleaky_nir_equals_snntorch_and_compiles(tmp_path):
    from snncompile.formats.nir.read import import_nir
    path = tmp_path / "rleaky.nir"
    net = _snntorch_rleaky(path)
    g = import_nir(path)
    assert g.meta["nir"]["convention"] == "snntorch"
    assert isinstance(g.node("1.w_rec"), RecDense) and g.inputs("1.w_rec") == ["1.lif"]
    assert g.inputs("1.lif") == ["0", "1.w_rec"]
    x = (np.random.default_rng(0).random((20, 8, 10)) < 0.4).astype(np.float32)
    want, got = _snntorch_spikes(net, x), run_float(g, x)
    for name in want:      # snnTorch's own simulation, spike for spike
        assert np.array_equal(got[name], want[name]), name
    assert want["1.lif"].sum() > 50 and want["3"].sum() > 20
    calib = (np.random.default_rng(1).random((32, 8, 10)) < 0.4).astype(np.int64)
    build = compile_model(path, "loihi2", calib=calib)
    assert build.report["fidelity"]["warnings"] == []
    assert isinstance(build.graph.node("1.w_rec"), FxRecDense)
    xi = calib[:3]
    ref = reference_run(build.graph, xi)
    assert all(np.array_equal(Simulator(build.graph).run(xi).spikes[k], ref[k]) for k in ref)


def test_a_nir_cycle_through_two_layers_is_refused(tmp_path):
    nir = pytest.importorskip("nir")
    from snncompile.formats.nir.read import import_nir
    rng = np.random.default_rng(0)

    def lif(n):
        return nir.LIF(tau=np.full(n, 1e-3), r=np.full(n, 1.0), v_leak=np.zeros(n),
                       v_threshold=np.ones(n))
    g = nir.NIRGraph(nodes={"input": nir.Input(np.array([3])),
                            "a": nir.Linear(rng.normal(size=(4, 3))), "l1": lif(4),
                            "b": nir.Linear(rng.normal(size=(4, 4))), "l2": lif(4),
                            "c": nir.Linear(rng.normal(size=(4, 4))),
                            "output": nir.Output(np.array([4]))},
                     edges=[("input", "a"), ("a", "l1"), ("l1", "b"), ("b", "l2"),
                            ("l2", "c"), ("c", "l1"), ("l2", "output")])
    with pytest.raises(UnsupportedError, match="cycle through"):
        import_nir(g, dt=1e-4)


def test_recurrent_float_graph_round_trips_through_nir(tmp_path):
    pytest.importorskip("nir")
    from snncompile.formats.nir.read import import_nir
    from snncompile.formats.nir.write import write_nir
    graph = graph_from_model(_model(_cfg(12, (True, False, True)), 7))
    write_nir(graph, tmp_path / "rec.nir", dt=1e-3)
    back = import_nir(tmp_path / "rec.nir")
    assert back.meta["nir"]["convention"] == "snncompile"
    assert back.inputs("lif0") == ["dense1", "lif0.rec"]
    x = (np.random.default_rng(7).random((4, 10, 10)) < 0.5).astype(np.float32)
    want, got = run_float(graph, x), run_float(back, x)
    for name in want:
        assert np.array_equal(got[name], want[name]), name
    assert want["lif0"].sum() > 0


def test_netx_export_of_a_recurrent_build_is_refused_in_one_line(build, tmp_path):
    from snncompile.formats.netx.write import export_netx
    with pytest.raises(UnsupportedError) as err:
        export_netx(build.graph, tmp_path / "rec.net")
    assert str(err.value).startswith("lif0.rec: recurrent synapses are not written to netx")
    assert "\n" not in str(err.value) and not (tmp_path / "rec.net").exists()
