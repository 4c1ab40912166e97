"""The integer reference behind its rule tables: which node types it supports, how it
refuses the others, inheritance of rules, and the registered backend against
`reference_run`."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from snncompile.backends import get_backend
from snncompile.backends.reference import REFERENCE, REFERENCE_GLOBAL, reference_run
from snncompile.backends.sim import Simulator
from snncompile.errors import UnsupportedError
from snncompile.ir import (NODE_TYPES, Dense, Flatten, FxConv1d, FxConv2d, FxCoproc,
                           FxCoprocOut, FxDelay, FxDense, FxGate, FxLI, FxLIF, FxSigmaDelta,
                           Graph, Input, Node, Output)


def lif_graph(seed=0):
    rng = np.random.default_rng(seed)
    w1 = rng.integers(-120, 120, (6, 5)) * 2
    w2 = rng.integers(-120, 120, (3, 6)) * 2
    graph = Graph.sequential([
        Input("in", shape=(5,)),
        FxDense("fc1", weight=w1), FxLIF("lif1", shape=(6,), du=800, dv=300, vth=60),
        FxDense("fc2", weight=w2), FxLIF("lif2", shape=(3,), du=500, dv=900, vth=40),
        Output("out")])
    x = (rng.random((5, 7, 5)) < 0.5).astype(np.int64)
    return graph, x


def sigma_delta_graph(seed=0):
    """Delta encoder -> dense -> sigma-delta (with a bias: it sends before any input
    arrives) -> dense -> sigma readout."""
    rng = np.random.default_rng(seed)
    graph = Graph.sequential([
        Input("in", shape=(4,), encoding="graded", bits=8),
        FxSigmaDelta("enc", shape=(4,), role="delta", vth=2),
        FxDense("fc1", weight=rng.integers(-100, 100, (6, 4)) * 2, num_message_bits=16),
        FxSigmaDelta("sd1", shape=(6,), vth=3, bias_mant=rng.integers(0, 20, 6)),
        FxDense("fc2", weight=rng.integers(-100, 100, (3, 6)) * 2, num_message_bits=16),
        FxSigmaDelta("readout", shape=(3,), role="sigma"),
        Output("out")])
    x = rng.integers(0, 256, (3, 6, 4))
    return graph, x


# ------------------------------------------------------------------ the tables
def test_tables_list_exactly_the_supported_node_types():
    assert set(REFERENCE.types) == {Input, Flatten, Output, FxDense, FxConv2d, FxConv1d,
                                    FxGate, FxCoproc, FxCoprocOut, FxLIF, FxDelay, FxLI}
    assert set(REFERENCE_GLOBAL.types) == {Input, Flatten, Output, FxDense, FxConv2d,
                                           FxConv1d, FxSigmaDelta}
    # every node type a compiled graph can hold has a rule in one of the two tables
    compiled_types = {t for t in NODE_TYPES.values() if t.stage != "float"}
    assert set(REFERENCE.types) | set(REFERENCE_GLOBAL.types) == compiled_types
    assert not any(REFERENCE.supports(t) or REFERENCE_GLOBAL.supports(t)
                   for t in NODE_TYPES.values() if t.stage == "float")


@dataclasses.dataclass
class FxMystery(Node):
    """A node type no stage has a rule for."""
    stage = "fixed"

    def out_shape(self, in_shapes):
        return self._one(in_shapes)


def test_an_unregistered_node_type_is_refused_in_one_line():
    graph, x = lif_graph()
    mystery = Graph.sequential([Input("in", shape=(5,)), FxMystery("odd"), Output("out")])
    with pytest.raises(UnsupportedError) as err:
        reference_run(mystery, x)
    msg = str(err.value)
    assert "\n" not in msg
    assert msg.startswith("odd: FxMystery has no integer reference rule")
    assert "FxLIF" in msg and "FxSigmaDelta" not in msg   # what this table supports


def test_a_float_node_is_refused_naming_it():
    graph = Graph.sequential([Input("in", shape=(5,)), Dense("fc", weight=np.ones((2, 5))),
                              Output("out")])
    with pytest.raises(UnsupportedError, match=r"^fc: Dense has no integer reference rule"):
        reference_run(graph, np.zeros((1, 2, 5), np.int64))


def test_a_lif_in_a_sigma_delta_graph_is_refused_by_the_global_time_table():
    graph = Graph.sequential([
        Input("in", shape=(4,), encoding="graded", bits=8),
        FxSigmaDelta("enc", shape=(4,), role="delta"),
        FxDense("fc", weight=np.full((2, 4), 2), num_message_bits=16),
        FxLIF("lif", shape=(2,)), Output("out")])
    with pytest.raises(UnsupportedError,
                       match=r"^lif: FxLIF has no integer reference \(global time\) rule"):
        reference_run(graph, np.zeros((1, 3, 4), np.int64))


@dataclasses.dataclass
class TracedLIF(FxLIF):
    """A subclass of a registered type with no rule of its own."""


def test_a_subclass_inherits_its_parents_rule_and_values():
    assert REFERENCE.rule(TracedLIF("t", shape=(2,))) is REFERENCE.rule(FxLIF("f", shape=(2,)))
    graph, x = lif_graph(3)
    sub = Graph.sequential([
        TracedLIF(**{f.name: getattr(n, f.name) for f in dataclasses.fields(n)})
        if type(n) is FxLIF else n for n in graph.nodes()])
    assert sum(type(n) is TracedLIF for n in sub.nodes()) == 2
    expected, got = reference_run(graph, x), reference_run(sub, x)
    assert expected.keys() == got.keys() == {"lif1", "lif2"}
    assert all(np.array_equal(expected[k], got[k]) for k in expected)


# ------------------------------------------------------------------ the backend
def test_backend_equals_reference_run_on_a_lif_graph():
    graph, x = lif_graph(1)
    ref, states = reference_run(graph, x, record_state=True)
    run = get_backend("reference").run(graph, x, batch=2, record_state=True)
    assert run.backend == "reference" and (run.samples, run.steps) == x.shape[:2]
    assert run.values.keys() == ref.keys() and run.boundary == {}
    for name in ref:
        assert run.values[name].dtype == bool
        assert run.values[name].shape == (5, 7) + graph.shape(name)
        assert np.array_equal(run.values[name], ref[name]), name
        assert all(np.array_equal(a, b) for a, b in zip(run.state[name], states[name]))
    assert any(v.any() for v in ref.values()), "the graph should spike"
    sim = Simulator(graph).run(x)       # and the independent simulator agrees
    assert all(np.array_equal(sim.spikes[k], ref[k]) for k in ref)


def test_backend_equals_reference_run_on_a_sigma_delta_graph():
    graph, x = sigma_delta_graph(2)
    ref = reference_run(graph, x)
    run = get_backend("reference").run(graph, x, batch=1)
    assert run.values.keys() == ref.keys() == {"enc", "sd1", "readout"}
    for name in ref:
        assert run.values[name].dtype == np.int32 and run.values[name].shape[:2] == (3, 6)
        assert np.array_equal(run.values[name], ref[name]), name
    # sd1 has a bias: it sends at its local step 0, before its first input arrives
    assert np.count_nonzero(ref["sd1"]) and np.count_nonzero(ref["readout"])
    sim = Simulator(graph).run(x)
    assert all(np.array_equal(sim.spikes[k], ref[k]) for k in ref)
    with pytest.raises(UnsupportedError, match="no recorded"):
        reference_run(graph, x, record_state=True)


def test_backend_boundary_holds_what_reference_run_keys_with_at(tmp_path):
    from test_attention_compile import compiled_htda
    build, x = compiled_htda(1, tmp_path, n=3, steps=6)
    ref = reference_run(build.graph, x)
    run = get_backend("reference").run(build.graph, x, batch=2)
    assert {"@" + k for k in run.boundary} == {k for k in ref if k.startswith("@")}
    assert "htda.map" in run.boundary
    for key, value in run.boundary.items():
        assert np.array_equal(value, ref["@" + key]), key
    for name, value in run.values.items():
        assert np.array_equal(value, ref[name]), name
    sim = Simulator(build.graph).run(x)
    assert np.array_equal(sim.boundary["htda.map"], run.boundary["htda.map"])
