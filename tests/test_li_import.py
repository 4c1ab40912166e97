"""Importing the non-spiking leaky-integrator readout (NIR `LI` / `CubaLI`) into the float
`LI` node, and the `LI` / `FxLI` node types themselves.

For each fixture of tests/li_sources.py (files written by sinabs, norse and rockpool with
the library's own voltage): the imported graph ends in an `LI` whose du, dv, bias, offset
and decision are the exporter convention's reading (`nir_li_params`, gain folded into the
feeding Dense), and a numpy float recurrence of the imported graph (written here: the
float-evaluation rule of the stage is not part of the importer) gives the library's
voltage to 1e-5. Misplaced readouts and a synapse bias into a decaying readout current
are refused in one line.
"""
from __future__ import annotations

import warnings

import numpy as np
import pytest

nir = pytest.importorskip("nir")
torch = pytest.importorskip("torch")
for _lib in ("sinabs", "norse", "rockpool"):
    pytest.importorskip(_lib)
pytestmark = pytest.mark.filterwarnings(
    "ignore:nirtorch.extract_nir_graph is being deprecated:DeprecationWarning")

import li_sources as L  # noqa: E402

from snncompile.errors import GraphError, UnsupportedError  # noqa: E402
from snncompile.formats.nir.read import SUPPORTED, import_nir  # noqa: E402
from snncompile.backends.float_model import run_float  # noqa: E402
from snncompile.ir import (LI, LIF, NEURON_TYPES, NODE_TYPES, FxDense, FxLI, Graph,  # noqa: E402
                           Input, Output, graphs_equal)

IDS = list(L.SOURCES)
TOL = 1e-5


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    """Each builder run once: {id: (LISource, path of its written .nir file)}."""
    root = tmp_path_factory.mktemp("li_import")
    out = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for key, build in L.SOURCES.items():
            src = build()
            out[key] = (src, src.write(root))
    return out


# ------------------------------------------------------------------ a float evaluator (test)
def _lif(x, n):
    u = np.zeros(x.shape[:1] + x.shape[2:])
    v = np.zeros_like(u)
    out = np.empty_like(x)
    for t in range(x.shape[1]):
        u = (1 - n.du) * u + x[:, t]
        v = (1 - n.dv) * v + u + n.bias
        s = v >= n.vth if n.fire_at == ">=" else v > n.vth
        after = {"zero": 0.0, "subtract": v - n.vth, "threshold": n.vth}[n.reset]
        v = np.where(s, after, v)
        out[:, t] = s
    return out


def _li(x, n):
    u = np.zeros(x.shape[:1] + x.shape[2:])
    v = np.zeros_like(u)
    out = np.empty_like(x)
    for t in range(x.shape[1]):
        u = (1 - n.du) * u + x[:, t]
        v = (1 - n.dv) * v + u + n.bias.astype(np.float64)
        out[:, t] = v + n.offset
    return out


def _evaluate(graph, x) -> dict:
    """{node: (N, T, ...) float64} of the float graph on inputs x (N, T, ...), per the
    node docstrings (Dense without delays, LIF, LI)."""
    vals = {}
    for name in graph.order():
        n, ins = graph.node(name), graph.inputs(name)
        a = vals[ins[0]] if ins else np.asarray(x, dtype=np.float64)
        kind = type(n).__name__
        if kind == "Dense":
            assert n.delay is None
            a = a @ n.weight.astype(np.float64).T
        elif kind == "LIF":
            a = _lif(a, n)
        elif kind == "LI":
            a = _li(a, n)
        elif kind not in ("Input", "Output"):
            raise AssertionError(f"no test evaluation of {kind}")
        vals[name] = a
    return vals


def _expected(src, g) -> dict:
    """The readout as the fixture reads it (`nir_li_params`, `loihi_form`), the file's
    synapse bias into it, its dt (rockpool: solved from r, as the importer does)."""
    node = src.graph.nodes[src.readout_key]
    dt = src.dt
    if src.convention == "rockpool":
        dt = L.rockpool_dt(float(L.param(node, "tau").ravel()[0]),
                           float(L.param(node, "r").ravel()[0]))
    q = L.loihi_form(L.nir_li_params(node, src.convention, dt))
    pred = {b: a for a, b in src.graph.edges}
    syn = src.graph.nodes[pred[src.readout_key]]
    b = L.param(syn, "bias", 0.0) if type(syn).__name__ == "Affine" else 0.0
    gain = np.broadcast_to(q["gain"], (L.CLASSES,))
    return {**q, "gain": gain, "bias": q["bias"] + gain * b, "weight": L.param(syn, "weight")}


# ------------------------------------------------------------------ import per source
@pytest.mark.parametrize("sid", IDS)
def test_imported_readout_node(sources, sid):
    """The node before Output is an LI with the convention's du, dv, bias (synapse bias and
    leak), offset (norse: v_leak) and decision; gain folded into the Dense before it."""
    src, path = sources[sid]
    graph = import_nir(path)
    order = graph.order()
    li, syn = graph.node(order[-2]), graph.node(order[-3])
    assert type(li) is LI and type(graph.node(order[-1])) is Output
    want = _expected(src, graph)
    assert li.du == pytest.approx(want["du"], rel=1e-6)
    assert li.dv == pytest.approx(want["dv"], rel=1e-6)
    assert (li.du == 1.0) == (src.readout == "LI")
    np.testing.assert_allclose(li.bias, np.broadcast_to(want["bias"], li.shape), atol=1e-6)
    np.testing.assert_allclose(li.offset, np.broadcast_to(want["offset"], li.shape),
                               atol=1e-7)
    w = want["weight"]
    w = w if w.shape == syn.weight.shape else w.T   # rockpool stores (in, out)
    np.testing.assert_allclose(syn.weight, want["gain"].reshape(-1, 1) * w, rtol=1e-5,
                               atol=1e-7)
    assert li.decision == src.rule
    info = graph.meta["nir"]
    assert info["readout"] == {"node": li.name, "nir_type": src.readout,
                               "decision": src.rule,
                               "decision_source": info["readout"]["decision_source"]}
    assert any(a.startswith(f"{src.readout} readout") for a in info["assumptions"])
    assert any(a.startswith("readout decision") for a in info["assumptions"])
    assert graph.kind(li.name) == "real"


@pytest.mark.parametrize("sid", IDS)
def test_readout_reproduces_library_from_its_hidden_spikes(sources, sid):
    """The imported synapse + LI on the library's own hidden spikes give its voltage."""
    src, path = sources[sid]
    graph = import_nir(path)
    order = graph.order()
    li, syn = graph.node(order[-2]), graph.node(order[-3])
    v = _li(src.hidden @ syn.weight.astype(np.float64).T, li)
    err = float(np.abs(v - src.voltage).max())
    assert err <= TOL * max(1.0, float(np.abs(src.voltage).max())), f"{sid}: {err:.3g}"


@pytest.mark.parametrize("sid", IDS)
def test_float_graph_reproduces_library_voltage(sources, sid):
    """End to end (the sources whose hidden layer snncompile reproduces exactly): the
    imported graph's readout is the library's voltage at every step, and the decision
    under the imported rule is the library's."""
    src, path = sources[sid]
    assert src.hidden_exact
    graph = import_nir(path)
    vals = _evaluate(graph, src.inputs)
    v = vals[graph.order()[-1]]
    err = float(np.abs(v - src.voltage).max())
    assert err <= TOL * max(1.0, float(np.abs(src.voltage).max())), f"{sid}: {err:.3g}"
    li = graph.node(graph.order()[-2])
    np.testing.assert_array_equal(L.decide(v, li.decision), src.decision)


def test_rockpool_hidden_layer_resets_by_subtraction(sources):
    """rockpool's LIFTorch subtracts its threshold at v >= threshold: the import says so
    (LIF reset 'subtract', fire_at '>='), and with reset to zero instead the readout
    voltage would be far from rockpool's (so the option is what makes it exact)."""
    src, path = sources["rockpool-ExpSynTorch"]
    graph = import_nir(path)
    lif = graph.nodes(LIF)[0]
    assert (lif.reset, lif.fire_at) == ("subtract", ">=")
    lif.reset, lif.fire_at = "zero", ">"
    vals = _evaluate(graph, src.inputs)
    assert float(np.abs(list(vals.values())[-1] - src.voltage).max()) > 100 * TOL


def test_rockpool_dt_comes_from_the_readout(sources):
    """Input -> Linear -> ExpSyn has no LIF: dt is solved from the LI's r."""
    src, path = sources["rockpool-ExpSynTorch-direct"]
    info = import_nir(path).meta["nir"]
    assert info["dt"] == pytest.approx(L.ROCKPOOL_DT, rel=1e-6) and not info["dt_guessed"]


def test_decision_override_and_unknown_rule(sources):
    src, path = sources["norse-LIBoxCell"]
    graph = import_nir(path, decision="last")
    assert graph.node(graph.order()[-2]).decision == "last"
    assert graph.meta["nir"]["readout"]["decision_source"] == "given by the caller"
    with pytest.raises(UnsupportedError) as exc:
        import_nir(path, decision="mean")
    assert "\n" not in str(exc.value) and "'mean'" in str(exc.value)


def test_supported_lists_the_readouts():
    assert {"LI", "CubaLI"} <= set(SUPPORTED)


# ------------------------------------------------------------------ refusals, one line each
def _hand(readout_at: str, bias=None, readout=None):
    """Input(6) -> fc1 -> lif1 (CubaLIF) -> fc2 -> lif2 -> Output, with `readout` (default
    an LI) replacing node `readout_at` and fc2 an Affine when `bias` is given."""
    rng = np.random.default_rng(0)
    w1 = rng.normal(0, 0.6, (12, 6)).astype(np.float32)
    w2 = rng.normal(0, 0.6, (3, 12)).astype(np.float32)
    full = lambda n, v: np.full(n, v, dtype=np.float32)  # noqa: E731
    lif = lambda n: nir.CubaLIF(tau_syn=full(n, 5e-3), tau_mem=full(n, 1e-2),  # noqa: E731
                                r=full(n, 10.0), w_in=full(n, 5.0), v_leak=full(n, 0),
                                v_threshold=full(n, 1.0), v_reset=full(n, 0))
    nodes = {"in": nir.Input(input_type={"input": np.array([6])}),
             "fc1": nir.Linear(weight=w1), "lif1": lif(12),
             "fc2": (nir.Linear(weight=w2) if bias is None else
                     nir.Affine(weight=w2, bias=full(3, bias))),
             "lif2": lif(3), "out": nir.Output(output_type={"output": np.array([3])})}
    n = 12 if readout_at == "lif1" else 3
    nodes[readout_at] = readout or nir.LI(tau=full(n, 2e-2), r=full(n, 1.0),
                                          v_leak=full(n, 0.0))
    edges = [("in", "fc1"), ("fc1", "lif1"), ("lif1", "fc2"), ("fc2", "lif2"),
             ("lif2", "out")]
    return nir.NIRGraph(nodes=nodes, edges=edges, type_check=False)


def _refused(graph, match, **kw) -> str:
    with pytest.raises(UnsupportedError, match=match) as exc:
        import_nir(graph, **kw)
    text = str(exc.value)
    assert "\n" not in text and len(text) < 400, text
    return text


def test_readout_before_output_imports_with_the_nir_equations():
    graph = import_nir(_hand("lif2"), dt=1e-3)
    li = graph.node("lif2")
    assert graph.meta["nir"]["convention"] == "nir"
    assert (li.du, li.dv, li.decision) == (1.0, pytest.approx(0.05), "sum")
    full = import_nir(_hand("lif2", readout=nir.CubaLIF(
        tau_syn=np.full(3, 4e-3), tau_mem=np.full(3, 2e-2), r=np.full(3, 20.0),
        w_in=np.full(3, 4.0), v_leak=np.zeros(3), v_threshold=np.ones(3),
        v_reset=np.zeros(3))), dt=1e-3)
    # forward Euler gain dv r = 0.05 folded into fc2 (the spiking import leaves it as is)
    np.testing.assert_allclose(graph.node("fc2").weight, 0.05 * full.node("fc2").weight,
                               rtol=1e-6)


def test_readout_not_before_output_is_refused():
    text = _refused(_hand("lif1"), "non-spiking", dt=1e-3)
    assert "'lif1'" in text and "'fc2'" in text and "before Output" in text


def test_cubali_with_synapse_bias_into_decaying_current_keeps_it_on_the_synapse():
    """Into a CubaLI current that decays (du = 0.25) the bias is the synapse's, scaled by
    the readout's input gain with the weights (the chip's bias axon), not a voltage bias:
    the readout's voltage equals forward Euler of the NIR equations with the bias."""
    cuba = nir.CubaLI(tau_syn=np.full(3, 4e-3), tau_mem=np.full(3, 2e-2), r=np.ones(3),
                      v_leak=np.zeros(3), w_in=np.ones(3))
    graph = import_nir(_hand("lif2", bias=0.1, readout=cuba), dt=1e-3)
    plain = import_nir(_hand("lif2", readout=cuba), dt=1e-3)
    li, gain = graph.node("lif2"), 0.05 * 0.25          # dv r du w_in
    assert li.du == pytest.approx(0.25) and not np.any(li.bias)
    np.testing.assert_allclose(graph.node("fc2").bias, np.full(3, gain * 0.1), rtol=1e-6)
    # no input spikes: I = 0.75 I + 0.25 * 0.1, v = 0.95 v + 0.05 I (forward Euler)
    x = np.zeros((1, 12) + tuple(graph.input_node().shape), np.float32)
    i = v = 0.0
    want = []
    for _ in range(12):
        i = 0.75 * i + 0.25 * 0.1
        v = 0.95 * v + 0.05 * i
        want.append(v)
    got = run_float(graph, x)["lif2"][0, :, 0]
    np.testing.assert_allclose(got, want, rtol=1e-5)
    assert not run_float(plain, x)["lif2"].any()
    # the same bias into an LI (no current state) is exact: gain * bias
    graph = import_nir(_hand("lif2", bias=0.1), dt=1e-3)
    np.testing.assert_allclose(graph.node("lif2").bias, 0.05 * 0.1, rtol=1e-6)


def test_cubali_bias_from_norse_file_compiles_onto_the_synapse(sources, tmp_path):
    """norse LICell (du = 0.25) fed by an Affine with a bias: the bias stays on the
    synapse (scaled by the input gain with its weights)."""
    src, _ = sources["norse-LICell"]
    import copy
    g = copy.deepcopy(src.graph)
    pred = {b: a for a, b in g.edges}
    key = pred[src.readout_key]
    w = L.param(g.nodes[key], "weight").astype(np.float32)
    g.nodes[key] = nir.Affine(weight=w, bias=np.full(w.shape[0], 0.2, np.float32))
    graph = import_nir(g)
    readout = graph.nodes(LI)[0]
    assert readout.du < 1 and not np.any(readout.bias)
    syn = graph.node(graph.inputs(readout.name)[0])
    nz = np.abs(w) > 1e-6
    gain = (syn.weight[nz] / w[nz]).mean()        # the input gain folded into the row
    np.testing.assert_allclose(syn.weight, w * gain, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(syn.bias, np.full(w.shape[0], 0.2 * gain), rtol=1e-5)


def test_readout_without_a_synapse_is_refused():
    graph = nir.NIRGraph(nodes={
        "in": nir.Input(input_type={"input": np.array([3])}),
        "li": nir.LI(tau=np.full(3, 2e-2), r=np.ones(3), v_leak=np.zeros(3)),
        "out": nir.Output(output_type={"output": np.array([3])})},
        edges=[("in", "li"), ("li", "out")], type_check=False)
    _refused(graph, "must directly follow a Linear", dt=1e-3)


def test_readout_in_a_convention_without_one_is_refused():
    _refused(_hand("lif2"), "writes none", convention="snntorch")


# ------------------------------------------------------------------ norse frontend
@pytest.mark.parametrize("sid", ["norse-LIBoxCell", "norse-LICell"])
def test_norse_frontend_imports_li_cells(sources, sid):
    """import_norse on the fixture's own model: same readout and the library's voltage."""
    from snncompile.frontends.norse_import import import_norse
    src, path = sources[sid]
    graph = import_norse(src.model, torch.zeros(1, L.N_IN))
    li = graph.node(graph.order()[-2])
    ref = import_nir(path).node(import_nir(path).order()[-2])
    assert type(li) is LI and (li.du, li.dv, li.decision) == (ref.du, ref.dv, "max")
    np.testing.assert_allclose(li.offset, ref.offset)
    v = _evaluate(graph, src.inputs)[graph.order()[-1]]
    assert float(np.abs(v - src.voltage).max()) <= TOL * max(1.0, np.abs(src.voltage).max())


# ------------------------------------------------------------------ the node types
def test_node_types_registered_with_traits():
    assert NODE_TYPES["LI"] is LI and NODE_TYPES["FxLI"] is FxLI
    assert (LI.stage, LI.kind, LI.is_neuron) == ("float", "real", False)
    assert (FxLI.stage, FxLI.kind, FxLI.is_neuron, FxLI.runs_in_global_time) == (
        "fixed", "graded", True, False)
    assert FxLI in NEURON_TYPES and not FxLI.is_synapse
    assert not issubclass(FxLI, NODE_TYPES["FxLIF"]) and not issubclass(LI, NODE_TYPES["LIF"])


@pytest.mark.parametrize("kw, match", [
    (dict(du=1.5), "du = 1.5 must be a number in"),
    (dict(dv=float("nan")), "dv = nan"),
    (dict(decision="mean"), "decision = 'mean' must be one of last, sum, max"),
    (dict(bias=np.ones(2)), "bias .* broadcastable to the shape"),
    (dict(offset=np.array([np.inf, 0, 0])), "offset"),
])
def test_li_fields_are_checked(kw, match):
    with pytest.raises(GraphError, match=match):
        LI("r", shape=(3,), **kw)


@pytest.mark.parametrize("kw, match", [
    (dict(du=4096), r"du = 4096 must be an integer in \[0, 4095\]"),
    (dict(dv=-1), "dv = -1"),
    (dict(bias_mant=np.array([0.5, 0, 0])), "bias_mant must be integers"),
    (dict(scale=0.0), "scale = 0.0 must be a finite number > 0"),
    (dict(decision=3), "decision = 3"),
])
def test_fxli_fields_are_checked(kw, match):
    with pytest.raises(GraphError, match=match):
        FxLI("r", shape=(3,), **kw)


def test_graphs_with_readouts_save_and_load(sources, tmp_path):
    src, path = sources["norse-LICell"]
    float_graph = import_nir(path)
    float_graph.save(tmp_path)
    back = Graph.load(tmp_path)
    assert graphs_equal(float_graph, back) and back.stage == "float"
    fixed = Graph.sequential([
        Input("in", shape=(4,)),
        FxDense("fc", weight=np.array([[1, -2, 3, 0]] * 3, dtype=np.int32), weight_exp=6),
        FxLI("ro", shape=(3,), du=4095, dv=700, bias_mant=np.array([5, -3, 0]), bias_exp=3,
             scale=96.5, offset=np.array([0.25, 0.25, 0.25]), decision="max"),
        Output("out")])
    fixed.validate()
    (tmp_path / "fx").mkdir()
    fixed.save(tmp_path / "fx")
    again = Graph.load(tmp_path / "fx")
    assert graphs_equal(fixed, again) and again.stage == "fixed"
    ro = again.node("ro")
    assert (ro.dv, ro.scale, ro.decision, ro.bias_mant.dtype) == (700, 96.5, "max", np.int32)
    assert again.kind("ro") == "graded"
