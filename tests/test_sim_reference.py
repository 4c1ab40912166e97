"""The simulator (numpy, global time with synapse buffers) against the integer reference
(PyTorch, layer by layer in local time) on random networks: spikes and u/v identical."""
import numpy as np
import pytest
from hypothesis import given, settings

from hypothesis_profile import examples

from snncompile.build import Build
from snncompile.errors import OverflowDetected
from snncompile.ir import FxDense
from snncompile.backends.reference import reference_run
from snncompile.backends.sim import Simulator
from snncompile.target import load_target
from snncompile.verify.compare import verify

from strategies import fixed_networks


@settings(max_examples=examples(60), deadline=None)
@given(fixed_networks())
def test_simulator_equals_reference_spikes_and_state(case):
    graph, x = case
    res = Simulator(graph).run(x, record_state=True, batch_size=3)
    ref, states = reference_run(graph, x, record_state=True)
    for name in ref:
        assert np.array_equal(res.spikes[name], ref[name]), name
        assert np.array_equal(res.state[name][0], states[name][0]), name
        assert np.array_equal(res.state[name][1], states[name][1]), name


@settings(max_examples=examples(30), deadline=None)
@given(fixed_networks(conv=False, delays=True))
def test_simulator_equals_reference_with_synaptic_delays(case):
    graph, x = case
    res = Simulator(graph).run(x, batch_size=2)
    ref = reference_run(graph, x)
    for name in ref:
        assert np.array_equal(res.spikes[name], ref[name]), name


@settings(max_examples=examples(25), deadline=None)
@given(fixed_networks())
def test_batch_size_does_not_change_results_or_counts(case):
    graph, x = case
    sim = Simulator(graph)
    a, b = sim.run(x, batch_size=1), sim.run(x, batch_size=64)
    assert all(np.array_equal(a.spikes[k], b.spikes[k]) for k in a.spikes)
    assert a.counts == b.counts and a.overflow == b.overflow


def test_event_counts_by_hand():
    from snncompile.ir import FxLIF, Graph, Input, Output
    w = np.array([[2, 0, 4], [0, 0, 6]], np.int32)          # column fan-outs: 1, 0, 2
    g = Graph.sequential([Input("in", shape=(3,)),
                          FxDense("fc", weight=w, sign_mode="excitatory"),
                          FxLIF("lif", shape=(2,), du=4095, dv=4095, vth=1000), Output("o")])
    x = np.array([[[1, 1, 0], [0, 0, 1], [1, 1, 1]]])      # 1 sample, 3 steps
    c = Simulator(g).run(x).counts
    assert c["fc"] == {"synops": 1 + 0 + 2 + 1 + 0 + 2, "input_events": 6}
    assert c["lif"]["neuron_updates"] == 6 and c["lif"]["spikes"] == 0


def _unrepresentable(graph):
    fc = next(n for n in graph.nodes(FxDense))
    fc.weight = fc.weight.copy()
    fc.weight.flat[0] = 255 if fc.sign_mode != "inhibitory" else -300
    fc.sign_mode = "mixed" if fc.sign_mode != "inhibitory" else fc.sign_mode
    return fc


def test_verify_names_first_divergence_when_simulator_differs(monkeypatch):
    """Make the comparison fail on purpose: the simulator applies Lava's weight truncation,
    the reference refuses unrepresentable weights, a tampered simulator is caught."""
    from hypothesis import find
    from snncompile.ir import Graph
    graph, x = find(fixed_networks(conv=False), lambda c: c[1].sum() > 5
                    and len(c[0].nodes(FxDense)) == 1)
    build = Build(graph=graph, float_graph=graph, target=load_target("loihi2"), report={})
    rep = verify(build, x, backends=("reference", "sim"))
    assert rep.equivalent and rep.mismatches == 0
    real_step = Simulator.__dict__["run"]

    def flipped(self, inputs, **kw):
        res = real_step(self, inputs, **kw)
        name = list(res.spikes)[-1]
        res.spikes[name][0, -1].flat[0] ^= True
        return res
    monkeypatch.setattr(Simulator, "run", flipped)
    rep = verify(build, x, backends=("reference", "sim"))
    assert not rep.equivalent and rep.mismatches == 1
    d = rep.first_divergence
    assert d["neuron"] == 0 and d["sample"] == 0 and d["step"] == x.shape[1] - 1
    assert set(d["sides"]) == {"reference", "sim"} and "u" in d["sides"]["sim"]
    assert "first divergence: layer" in rep.text()


def test_strict_mode_and_reference_refuse_unrepresentable_weights():
    from hypothesis import find
    graph, x = find(fixed_networks(conv=False), lambda c: True)
    _unrepresentable(graph)
    with pytest.raises(OverflowDetected, match="not representable"):
        Simulator(graph, strict=True).run(x)
    with pytest.raises(Exception, match="not a representable 8-bit mantissa"):
        reference_run(graph, x)
