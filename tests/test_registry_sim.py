"""The simulator behind the registry: its `SIM` table covers exactly the fixed-point node
types, an unregistered type is refused in one line, the compiled path's `KERNELS` table
decides (and names) the fallback, and the `sim` backend's Run equals `Simulator.run`."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from snncompile.backends import get_backend
from snncompile.backends.sim import Simulator
from snncompile.backends.sim.kernels_plan import KERNELS
from snncompile.backends.sim.simulator import SIM
from snncompile.errors import UnsupportedError
from snncompile.ir import (FxCoproc, FxDense, FxGate, FxLIF, FxSigmaDelta, Graph, Input,
                           NODE_TYPES, Output)
from snncompile.ir.nodes import Node


def test_sim_table_is_the_fixed_point_node_types():
    runs = {t for t in NODE_TYPES.values() if t.stage in ("fixed", "both")}
    assert set(SIM.types) == runs
    assert len(SIM.types) == len(runs)
    assert set(KERNELS.types) < set(SIM.types)      # the compiled path is a subset
    assert FxCoproc not in KERNELS.types and {FxLIF, FxGate} <= set(KERNELS.types)


@dataclasses.dataclass
class FxMystery(Node):
    """A fixed-point node type that no simulator rule knows."""

    stage = "fixed"

    def out_shape(self, in_shapes):
        return self._one(in_shapes)


def _lif_graph(extra=None):
    rng = np.random.default_rng(0)
    nodes = [Input("in", shape=(6,), encoding="spikes"),
             FxDense("fc", weight=rng.integers(-100, 100, (4, 6)) * 2, weight_exp=2)]
    nodes += [extra] if extra is not None else []
    nodes += [FxLIF("lif", shape=(4,), du=100, dv=200, vth=30), Output("out")]
    return Graph.sequential(nodes)


def test_unregistered_node_type_is_refused_in_one_line():
    graph = _lif_graph(FxMystery("odd"))
    with pytest.raises(UnsupportedError) as err:
        Simulator(graph)
    msg = str(err.value)
    assert "\n" not in msg
    assert msg.startswith("odd: FxMystery has no simulator rule (supported: ")
    assert "FxLIF" in msg and "FxCoproc" in msg
    assert get_backend("sim").unsupported(graph) == msg
    assert get_backend("sim").unsupported(_lif_graph()) is None


def test_kernel_fallback_names_the_node_type(monkeypatch):
    pytest.importorskip("numba")
    # a registered simulator type without a kernel steps on its numpy code inside the
    # kernel path: the reason names its type, the run gives the numpy path's integers
    monkeypatch.delitem(KERNELS._rules, FxDense)
    sim = Simulator(_lif_graph(), kernel="numba")
    assert sim.kernel == "numba"
    assert "FxDense step on their numpy code" in sim.kernel_reason
    x = np.ones((2, 5, 6), np.int64)
    a, b = Simulator(_lif_graph(), kernel="numpy").run(x), sim.run(x)
    assert b.kernel == "numba"
    for name in a.spikes:
        assert np.array_equal(a.spikes[name], b.spikes[name]), name
    assert a.counts == b.counts and a.overflow == b.overflow


def _assert_runs_equal(a, b):
    assert a.values.keys() == b.values.keys() and a.boundary.keys() == b.boundary.keys()
    for name in a.values:
        assert a.values[name].dtype == b.values[name].dtype, name
        assert np.array_equal(a.values[name], b.values[name]), name
    for name in a.boundary:
        assert np.array_equal(a.boundary[name], b.boundary[name]), name
    assert a.counts == b.counts and a.overflow == b.overflow
    assert (a.samples, a.steps, a.backend) == (b.samples, b.steps, "sim")


def test_backend_run_equals_simulator_run_on_a_coprocessor_loop(tmp_path):
    from test_attention_compile import compiled_htda
    build, x = compiled_htda(0, tmp_path)
    g, num = build.graph, build.target.numerics
    direct = Simulator(g, num).run(x)
    via = get_backend("sim").run(g, x, numerics=num)
    _assert_runs_equal(direct, via)
    # the loop has every stateful op: partition, gate, delay, LIF neurons
    assert direct.boundary and any(k.startswith("htda.coproc<-") for k in direct.boundary)
    assert {"coproc_steps", "gate_products"} <= {k for c in direct.counts.values() for k in c}
    assert set(direct.values) == set(Simulator(g, num).neurons)
    assert all(v.dtype == np.bool_ for v in direct.values.values())


def test_sigma_delta_values_are_read_in_local_time():
    """A sigma-delta node runs in global time; its Run values are its local window, so a
    node at depth d shows at local step t what it computed at global step t + d."""
    rng = np.random.default_rng(3)
    g = Graph.sequential([
        Input("in", shape=(5,), encoding="graded", bits=8),
        FxSigmaDelta("enc", shape=(5,), role="delta", vth=2),
        FxDense("fc", weight=rng.integers(-120, 120, (3, 5)) * 2, weight_exp=-2,
                num_message_bits=16),
        FxSigmaDelta("sd", shape=(3,), vth=4), Output("out")])
    x = rng.integers(0, 256, (2, 7, 5))
    sim = Simulator(g, kernel="numpy")
    assert sim.neurons == ["enc", "sd"]
    res = sim.run(x)
    via = get_backend("sim").run(g, x)
    _assert_runs_equal(res, via)
    assert res.values["sd"].dtype == np.int32
    # sigma-delta nodes update at every global step (T + max depth), not only in T
    assert res.counts["sd"]["neuron_updates"] == 2 * (7 + 1) * 3   # every global step
    assert res.counts["enc"]["neuron_updates"] == 2 * (7 + 1) * 5
    assert np.count_nonzero(res.values["enc"]) > 0
    # every neuron has a state entry (sigma-delta ones stay zero), as verify expects
    state = sim.run(x, record_state=True).state
    assert set(state) == {"enc", "sd"} and not state["sd"][0].any()


def test_mixing_global_time_with_resetting_nodes_is_refused():
    g = Graph.sequential([
        Input("in", shape=(4,), encoding="graded", bits=8),
        FxSigmaDelta("enc", shape=(4,), role="delta", vth=2),
        FxDense("fc", weight=np.ones((3, 4), np.int64) * 2, num_message_bits=16),
        FxLIF("lif", shape=(3,), du=1, dv=1, vth=3), Output("out")])
    with pytest.raises(UnsupportedError, match="mix sigma-delta"):
        Simulator(g)
