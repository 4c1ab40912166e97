"""Synapse bias (Dense and Conv2d) compiled exactly as an always-on bias axon.

A bias b added to a synapse's output every step enters the neuron's current u, which
decays; it equals a voltage bias only when u does not decay across steps (du = 1). The
fixed-point synapse carries it as `bias_mant << bias_exp` per output (`FxDense.bias_mant`):
the reference adds it at every local step, the simulator (numpy and numba) at every global
step (the neuron is zeroed at its window's start), Lava sends it from a RingBuffer of ones
through a one-column Dense into the same neurons. They must agree spike for spike."""
import numpy as np
import pytest
from hypothesis import given, settings

from hypothesis_profile import examples

from snncompile.backends.float_model import run_float
from snncompile.backends.reference import reference_run
from snncompile.backends.sim import Simulator
from snncompile.errors import InputFileError, QuantizationError, UnsupportedError
from snncompile.ir import (Conv2d, Dense, Flatten, FxConv2d, FxDense, FxLIF, Graph, Input,
                           LIF, Output, SumPool2d, AvgPool2d)
from snncompile.ir.limits import check_fixed_graph
from snncompile.passes.fold import fold_pools
from snncompile.passes.quantize import quantize
from snncompile.target import load_target

from strategies import assert_lava_equals_simulator, fixed_networks

LOIHI2 = load_target("loihi2")


def _biased(graph: Graph) -> bool:
    return any(getattr(graph.node(n), "bias_mant", None) is not None and graph.node(n).is_synapse
               for n in graph.order())


def _check_backends(graph, x):
    ref = reference_run(graph, x)
    for kernel in ("numpy", "numba"):
        res = Simulator(graph, kernel=kernel).run(x, batch_size=2)
        for name in ref:
            assert np.array_equal(res.spikes[name], ref[name]), (kernel, name)
    return ref


@settings(max_examples=examples(40), deadline=None)
@given(fixed_networks(synapse_bias=True))
def test_reference_equals_simulator_on_random_biased_graphs(case):
    _check_backends(*case)


@settings(max_examples=examples(25), deadline=None)
@given(fixed_networks(synapse_bias=True, conv=True, max_layers=1))
def test_reference_equals_simulator_on_random_biased_conv_graphs(case):
    _check_backends(*case)


def test_the_bias_changes_what_the_random_networks_do():
    """The strategy's biases are not inert: with them removed, some of the random
    networks spike differently (else the property tests above would test nothing)."""
    from hypothesis import find
    import dataclasses

    def differs(case):
        graph, x = case
        if not _biased(graph):
            return False
        plain = Graph.sequential([dataclasses.replace(graph.node(n), bias_mant=None)
                                  if graph.node(n).is_synapse else graph.node(n)
                                  for n in graph.order()])
        a, b = reference_run(graph, x), reference_run(plain, x)
        return any(not np.array_equal(a[n], b[n]) for n in a)
    find(fixed_networks(synapse_bias=True), differs, settings=settings(max_examples=50))


@pytest.mark.lava
@settings(max_examples=examples(4), deadline=None)
@given(fixed_networks(synapse_bias=True, conv=False, max_layers=2))
def test_lava_equals_simulator_on_random_biased_dense_graphs(case):
    assert_lava_equals_simulator(case)


@pytest.mark.lava
@settings(max_examples=examples(3), deadline=None)
@given(fixed_networks(synapse_bias=True, conv=True, max_layers=1))
def test_lava_equals_simulator_on_random_biased_conv_graphs(case):
    assert_lava_equals_simulator(case)


# ------------------------------------------------------------ current bias vs voltage bias
def _one_neuron(du: float, synapse_bias: bool, b: float = 0.05, steps: int = 40):
    """One LIF (dv = 0, vth = 1) with no input spikes and a constant drive b per step:
    through its synapse (into u) or as its own voltage bias."""
    g = Graph.sequential([
        Input("in", shape=(1,)),
        Dense("fc", weight=np.array([[0.5]]), bias=np.array([b]) if synapse_bias else None),
        LIF("lif", shape=(1,), du=du, dv=0.0, vth=1.0,
            bias=None if synapse_bias else np.array([b], np.float32)),
        Output("out")])
    return g, np.zeros((1, steps, 1), np.int64)


def test_a_current_bias_is_not_a_voltage_bias():
    """With du = 0.1 the current integrates the bias: u -> b / du = 0.5, so v crosses 1
    every few steps; as a voltage bias v gains 0.05 a step and crosses 1 once in 20. The
    compiled network keeps the current bias (spike for spike here), so it fires as the
    float model with the synapse bias, not as one with a voltage bias."""
    g_cur, x = _one_neuron(0.1, True)
    g_volt, _ = _one_neuron(0.1, False)
    f_cur = run_float(g_cur, x)["lif"]
    f_volt = run_float(g_volt, x)["lif"]
    assert f_cur.sum() >= 5 * f_volt.sum() > 0
    fx, _ = quantize(g_cur, LOIHI2, {"lif": {"peak_u": 0.5, "peak_v": 1.0}})
    assert fx.node("fc").bias_mant is not None and not fx.node("lif").bias_mant.any()
    ref = _check_backends(fx, x)["lif"]
    assert np.array_equal(ref, f_cur)
    assert not np.array_equal(ref, f_volt)


def test_with_du_one_the_two_biases_agree():
    """du = 1: the current holds only this step's input, so a synapse bias is a voltage
    bias; the float model says so, and the compiled bias axon gives the same spikes."""
    g_cur, x = _one_neuron(1.0, True, b=0.06)      # v = 0.06 t: no tie with vth = 1
    g_volt, _ = _one_neuron(1.0, False, b=0.06)
    f_cur = run_float(g_cur, x)["lif"]
    assert np.array_equal(f_cur, run_float(g_volt, x)["lif"]) and f_cur.sum() > 0
    fx, _ = quantize(g_cur, LOIHI2, {"lif": {"peak_u": 0.06, "peak_v": 1.0}})
    assert np.array_equal(_check_backends(fx, x)["lif"], f_cur)


@pytest.mark.lava
def test_lava_keeps_the_current_bias():
    g_cur, x = _one_neuron(0.1, True, steps=12)
    fx, _ = quantize(g_cur, LOIHI2, {"lif": {"peak_u": 0.5, "peak_v": 1.0}})
    x2 = np.concatenate([x, x])            # two samples back to back: the reset holds
    assert_lava_equals_simulator((fx, x2))


# ------------------------------------------------------------ quantisation
def _float_net(conv: bool, seed: int = 0):
    rng = np.random.default_rng(seed)
    if conv:
        nodes = [Input("in", shape=(2, 6, 6)),
                 Conv2d("conv", weight=rng.normal(0, .4, (3, 2, 3, 3)),
                        bias=rng.normal(0, .3, 3), padding=(1, 1)),
                 LIF("lif1", shape=(3, 6, 6), du=.3, dv=.1, vth=1.0), Flatten("flat")]
        n = 108
    else:
        nodes = [Input("in", shape=(10,))]
        n = 10
    nodes += [Dense("fc", weight=rng.normal(0, .4, (4, n)), bias=rng.normal(0, .3, 4)),
              LIF("lif2", shape=(4,), du=.2, dv=.1, vth=1.0), Output("out")]
    g = Graph.sequential(nodes)
    x = (rng.random((16, 20) + g.input_node().shape) < .3).astype(np.int64)
    return g, x


@pytest.mark.parametrize("conv", [False, True])
def test_quantised_bias_is_representable_and_faithful(conv):
    g, x = _float_net(conv)
    rec = {}
    f = run_float(g, x, record=rec)
    fx, reps = quantize(g, LOIHI2, rec)
    check_fixed_graph(fx, LOIHI2.numerics)          # what a loaded build must pass
    ref = _check_backends(fx, x)
    for name in ref:
        assert ref[name].sum() > 0
        assert abs(int(ref[name].sum()) - int(f[name].sum())) <= 0.05 * f[name].sum()
    syn = "conv" if conv else "fc"
    assert fx.node(syn).bias_mant is not None


def test_a_bias_too_large_for_the_axon_limits_the_scale():
    g = Graph.sequential([Input("in", shape=(2,)),
                          Dense("fc", weight=np.array([[0.01, 0.02]]), bias=np.array([50.0])),
                          LIF("lif", shape=(1,), du=1.0, dv=0.5, vth=100.0), Output("out")])
    _, reps = quantize(g, LOIHI2, {"lif": {"peak_u": 50.0, "peak_v": 100.0}})
    assert reps[0].limited_by == "synapse bias"
    assert reps[0].scale == pytest.approx(255 * 2 ** 7 / 50.0)   # excitatory


def test_bias_into_attention_is_quantised_into_the_attention_input():
    """The gain multiplies current + bias (tests/test_attention_synapse_bias.py checks the
    backends): the biased conv keeps its bias axon and feeds the gate and co-processor."""
    from snncompile.ir import Attention
    rng = np.random.default_rng(0)
    g = Graph.sequential([Input("in", shape=(4, 4, 4)),
                          Conv2d("conv", weight=rng.normal(0, .3, (4, 4, 1, 1)),
                                 bias=np.ones(4) * .1),
                          Attention("att", variant="ca", ca_w1=rng.normal(0, 1, (2, 4)),
                                    ca_w2=rng.normal(0, 1, (4, 2)), steps=4),
                          LIF("lif", shape=(4, 4, 4), du=.5, dv=.5, vth=1.0), Output("out")])
    rec = {}
    run_float(g, (rng.random((4, 4, 4, 4, 4)) < .4).astype(np.int64), record=rec)
    fx, _ = quantize(g, LOIHI2, rec)
    assert fx.node("conv").bias_mant is not None and fx.node("conv").bias_mant.any()
    assert {type(fx.node(d)).__name__ for d in fx.outputs("conv")} == {"FxCoproc", "FxGate"}


# ------------------------------------------------------------ pools, limits, costs
@pytest.mark.parametrize("pool", [SumPool2d, AvgPool2d])
def test_a_pool_after_a_biased_conv_folds_its_bias(pool):
    rng = np.random.default_rng(1)
    g = Graph.sequential([Input("in", shape=(1, 4, 4)),
                          Conv2d("conv", weight=rng.normal(0, .5, (2, 1, 3, 3)),
                                 bias=np.array([.3, -.2]), padding=(1, 1)),
                          pool("pool", kernel=(2, 2)),
                          LIF("lif", shape=(2, 2, 2), du=.3, dv=.2, vth=1.0), Output("out")])
    folded, changed = fold_pools(g)
    assert changed and folded.node("conv").bias is not None
    x = (rng.random((8, 10, 1, 4, 4)) < .4).astype(np.int64)
    a, b = run_float(g, x), run_float(folded, x)
    assert np.array_equal(a["lif"], b["lif"]) and a["lif"].any()


def _fixed(bias_mant, dst=None):
    g = Graph()
    g.add(Input("in", shape=(3,)))
    g.add(FxDense("fc", weight=np.full((2, 3), 4, np.int32), bias_mant=bias_mant,
                  bias_exp=1), ["in"])
    if dst is None:
        g.add(FxLIF("lif", shape=(2,), du=10, dv=10, vth=50), ["fc"])
    else:
        g.add(dst, ["fc"])
    g.add(Output("out"), [g.order()[-1]])
    return g


def test_loaded_bias_axons_are_range_checked():
    check_fixed_graph(_fixed(np.array([254, -256], np.int32)), LOIHI2.numerics)
    with pytest.raises(InputFileError, match=r"bias_mant\[1\] \(-3\) is not an 8-bit mixed"):
        check_fixed_graph(_fixed(np.array([4, -3], np.int32)), LOIHI2.numerics)
    with pytest.raises(InputFileError, match=r"bias_mant \(300\) outside \[-256, 255\]"):
        check_fixed_graph(_fixed(np.array([300, 0], np.int32)), LOIHI2.numerics)
    from snncompile.ir import FxSigmaDelta
    with pytest.raises(InputFileError, match="a synapse bias axon feeds 'sd'"):
        check_fixed_graph(_fixed(np.array([2, 2], np.int32), FxSigmaDelta("sd", shape=(2,))),
                          LOIHI2.numerics)


def test_the_bias_axon_costs_an_input_axon_and_its_synapses_every_step():
    from snncompile.mapping.split import split_graph
    plain, biased = _fixed(None), _fixed(np.array([2, 0], np.int32))
    use = {name: split_graph(g, LOIHI2).blocks[0].usage
           for name, g in (("plain", plain), ("biased", biased))}
    assert use["biased"]["input_axons"] == use["plain"]["input_axons"] + 1
    assert use["biased"]["synapse_bits"] > use["plain"]["synapse_bits"]
    x = np.zeros((3, 5, 3), np.int64)
    counts = Simulator(biased).run(x).counts["fc"]
    assert counts["bias_events"] == 3 * 5 and counts["bias_synops"] == 3 * 5 * 1
    assert counts["synops"] == 15 and counts["input_events"] == 15


def test_the_energy_report_charges_the_bias_axon():
    from snncompile.energy.model import estimate_energy
    from snncompile.mapping.place import place
    from snncompile.mapping.split import split_graph
    g = _fixed(np.array([2, 2], np.int32))
    x = np.zeros((2, 6, 3), np.int64)
    run = Simulator(g).run(x)
    mapping = place(split_graph(g, LOIHI2), LOIHI2)
    r = estimate_energy(g, mapping, run.counts, LOIHI2, samples=2, steps=6)
    assert r.events["lif"]["bias_synops"] == 12 and r.events["lif"]["synops"] == 12
    assert r.events["lif"]["bias_messages"] == 6
    assert any("bias axon of fc" in n for n in r.notes)


def test_nir_export_round_trip_keeps_synapse_biases(tmp_path):
    """Dense and Conv2d biases into decaying currents go out as Affine / Conv2d bias and
    come back on the same synapses; the float graph spikes the same."""
    from snncompile.formats.nir import export_nir, write_nir
    from snncompile.formats.nir.read import import_nir
    g, x = _float_net(conv=True)
    write_nir(g, tmp_path / "b.nir", dt=1e-3)
    for back in (import_nir(export_nir(g, dt=1e-3), dt=1e-3),
                 import_nir(tmp_path / "b.nir", dt=1e-3)):
        for syn in ("conv", "fc"):
            np.testing.assert_allclose(back.node(syn).bias, g.node(syn).bias, rtol=1e-6)
        a, b = run_float(g, x), run_float(back, x)
        assert all(np.array_equal(a[n], b[n]) for n in a) and a["lif2"].any()


def test_lava_refuses_a_bias_axon_into_a_node_that_is_not_reset():
    from snncompile.backends.lava.lower import build
    from snncompile.ir import FxSigmaDelta
    g = _fixed(np.array([2, 2], np.int32), FxSigmaDelta("sd", shape=(2,)))
    with pytest.raises(UnsupportedError, match="fc: its bias axon feeds sd"):
        build(g, np.zeros((1, 3, 3), np.int64), 4, None)
