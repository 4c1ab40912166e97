"""Residual connections (unequal path depths): `ir.timing.balance` delays every early
synapse so that all currents into a neuron arrive in the same step, and the deployed graph
computes the delay-free sum. The reference runs in local time (no delays at all), the
simulator (numpy and numba) and Lava in global time with the inserted synaptic delays:
they must agree spike for spike."""
import numpy as np
import pytest
from hypothesis import given, settings

from hypothesis_profile import examples

from snncompile.backends.reference import reference_run
from snncompile.backends.sim import Simulator
from snncompile.errors import GraphError
from snncompile.ir import FxConv2d, FxDense, FxLIF, Graph, Input, Output
from snncompile.ir.graph import graphs_equal
from snncompile.ir.timing import balance, timing

from strategies import residual_networks


def _block(shortcut_from="in"):
    """in -> fc1 -> lif1 -> fc2 -> lif2, plus a shortcut `skip` from `shortcut_from` into
    lif2: the shortcut arrives at step 1 (from the input) while fc2 arrives at step 2."""
    w = np.full((4, 4), 40, np.int32)
    g = Graph()
    g.add(Input("in", shape=(4,)))
    g.add(FxDense("fc1", weight=w, sign_mode="excitatory"), ["in"])
    g.add(FxLIF("lif1", shape=(4,), du=4095, dv=4095, vth=30), ["fc1"])
    g.add(FxDense("fc2", weight=w // 2, sign_mode="excitatory"), ["lif1"])
    g.add(FxDense("skip", weight=np.eye(4, dtype=np.int32) * 60, sign_mode="excitatory"),
          [shortcut_from])
    g.add(FxLIF("lif2", shape=(4,), du=4095, dv=4095, vth=90), ["fc2", "skip"])
    g.add(Output("out"), ["lif2"])
    return g


def test_unbalanced_graph_has_depths_but_no_timing():
    g = _block()
    assert g.depth("lif2") == 2 and g.misaligned() == [("skip", "lif2", 1)]
    with pytest.raises(GraphError, match="lif2: input 'skip' arrives 1 step"):
        timing(g, 4)


def test_balance_delays_the_shortcut_and_reports_it():
    g = _block()
    report = balance(g)
    assert g.node("skip").align == 1 and g.node("fc2").align == 0
    assert g.misaligned() == [] and timing(g, 5).depth["lif2"] == 2
    assert report == [{"synapse": "skip", "into": "lif2", "steps": 1, "synapses": 16,
                       "cost": report[0]["cost"]}]
    assert "2 step slot(s)" in report[0]["cost"]
    assert np.array_equal(g.node("skip").physical_delay(), np.ones((4, 4), np.int32))


def test_balanced_residual_by_hand():
    """One input spike on neuron 0 at step 0: all of lif1 spikes at local step 0 (40 > 30),
    fc2 carries 4 x 20 = 80 to every lif2 neuron and the shortcut 60 to lif2[0], both at
    local step 0 (no memory: du = dv = 4095), so lif2[0] alone crosses 90 (140); neither
    current would alone. Unbalanced, the shortcut would arrive a step before fc2."""
    g = _block()
    balance(g)
    x = np.zeros((1, 3, 4), np.int64)
    x[0, 0, 0] = 1
    ref = reference_run(g, x)["lif2"]
    want = np.zeros((1, 3, 4), bool)
    want[0, 0, 0] = True
    assert np.array_equal(ref, want)
    for kernel in ("numpy", "numba"):
        assert np.array_equal(Simulator(g, kernel=kernel).run(x).spikes["lif2"], want), kernel


@settings(max_examples=examples(40), deadline=None)
@given(residual_networks(delays=True))
def test_simulator_equals_reference_on_random_residual_graphs(case):
    graph, x = case
    balance(graph)
    ref = reference_run(graph, x)
    for kernel in ("numpy", "numba"):
        res = Simulator(graph, kernel=kernel).run(x, batch_size=2)
        for name in ref:
            assert np.array_equal(res.spikes[name], ref[name]), (kernel, name)


def test_balance_survives_save_and_load(tmp_path):
    g = _block()
    balance(g)
    g.save(tmp_path)
    back = Graph.load(tmp_path)
    assert graphs_equal(g, back) and back.node("skip").align == 1


def _conv_block(encoding="spikes"):
    """A conv residual block (Att_Res_SNN style): c1 -> l1 -> c2 and a conv shortcut from
    the input, both into l2; the shortcut is one step early."""
    g = Graph()
    g.add(Input("in", shape=(2, 4, 4), encoding=encoding, bits=1 if encoding == "spikes" else 3))
    w = np.full((2, 2, 3, 3), 10, np.int32)
    g.add(FxConv2d("c1", weight=w, padding=(1, 1)), ["in"])
    g.add(FxLIF("l1", shape=(2, 4, 4), vth=25, du=2000, dv=100), ["c1"])
    g.add(FxConv2d("c2", weight=w, padding=(1, 1)), ["l1"])
    g.add(FxConv2d("short", weight=w * 3, padding=(1, 1)), ["in"])
    g.add(FxLIF("l2", shape=(2, 4, 4), vth=40, du=1000, dv=500), ["c2", "short"])
    g.add(Output("out"), ["l2"])
    return g


def test_a_conv_shortcut_gets_delay_neurons():
    g = _conv_block()
    report = balance(g)
    assert g.misaligned() == [] and g.inputs("short") == ["short.relay0"]
    assert report[0]["synapse"] == "short" and "32 delay neurons" in report[0]["cost"]
    assert report[0]["delay_neurons"] == ["short.relay0"]
    rng = np.random.default_rng(3)
    x = (rng.random((2, 7, 2, 4, 4)) < 0.4).astype(np.int64)
    ref = reference_run(g, x)
    assert np.array_equal(ref["short.relay0"], x.astype(bool))  # a copy (local time)
    assert ref["l2"].any()
    for kernel in ("numpy", "numba"):
        res = Simulator(g, kernel=kernel).run(x)
        for name in ref:
            assert np.array_equal(res.spikes[name], ref[name]), (kernel, name)


def test_delay_neurons_need_binary_spikes():
    with pytest.raises(GraphError, match="short: FxConv2d has no synaptic delays and its "
                                         "input is not binary spikes"):
        balance(_conv_block("graded"))


def test_a_delay_past_the_chip_limit_is_refused():
    g = _block()
    g.node("skip").delay = np.full((4, 4), 62, np.int32)
    with pytest.raises(GraphError, match="skip: needs 63 steps of synaptic delay.*limit is 62"):
        balance(g)


@pytest.mark.lava
@settings(max_examples=examples(4), deadline=None)
@given(residual_networks(max_layers=3))
def test_lava_equals_reference_on_random_residual_graphs(case):
    from snncompile.backends.lava.run import run_lava
    graph, x = case
    balance(graph)
    ref = reference_run(graph, x[:2, :6])
    lava = run_lava(graph, x[:2, :6])
    for name in ref:
        assert np.array_equal(lava.spikes[name], ref[name]), name


@pytest.mark.lava
def test_lava_equals_reference_on_a_conv_residual_with_delay_neurons():
    from snncompile.backends.lava.run import run_lava
    g = _conv_block()
    balance(g)
    x = (np.random.default_rng(5).random((2, 5, 2, 4, 4)) < 0.4).astype(np.int64)
    ref, lava = reference_run(g, x), run_lava(g, x)
    for name in ref:
        assert np.array_equal(lava.spikes[name], ref[name]), name


def test_sanafe_refuses_a_path_aligned_synapse():
    from snncompile.energy.sanafe_backend import SANAFE
    from snncompile.errors import UnsupportedError
    g = _block()
    balance(g)
    SANAFE.rule(g.node("fc2")).check(g.node("fc2"))
    with pytest.raises(UnsupportedError, match="'skip' has synaptic delays \\(path alignment"):
        SANAFE.rule(g.node("skip")).check(g.node("skip"))
