"""The non-spiking leaky-integrator readout (`LI` / `FxLI`) end to end: every stage's table
has its rule, the compiled readout's int32 voltages agree value for value on the simulator,
the integer reference and Lava, and a NIR file written by sinabs, norse or rockpool
(tests/li_sources.py: each with the library's own voltages) compiles, verifies EQUIVALENT,
keeps the library's voltage in its float graph, decides as the library does, maps and is
priced.
"""
from __future__ import annotations

import warnings

import numpy as np
import pytest

from snncompile.ir import LI, FxDense, FxLI, Graph, Input, Output

try:
    import lava  # noqa: F401
    HAS_LAVA = True
except ImportError:
    HAS_LAVA = False


# ------------------------------------------------------------------ one hand-built readout
def _readout_graph(dv=300, du=4095, bias=(40, -25, 0), scale=64.0, offset=(0.0, 0.5, -0.25),
                   decision="sum", weight_exp=4):
    rng = np.random.default_rng(3)
    w = rng.integers(-120, 120, (3, 8)) * 2
    return Graph.sequential([
        Input("in", shape=(8,), encoding="spikes"),
        FxDense("fc", weight=w, weight_exp=weight_exp),
        FxLI("li", shape=(3,), du=du, dv=dv, bias_mant=np.array(bias, np.int32),
             bias_exp=3, scale=scale, offset=np.array(offset, np.float32),
             decision=decision),
        Output("out")])


def _spikes(shape, seed=0, p=0.3):
    return (np.random.default_rng(seed).random(shape) < p).astype(np.uint8)


def _numpy_li(graph: Graph, x: np.ndarray) -> np.ndarray:
    """The FxLI docstring's recurrence, written here from the docstrings (FxDense: W @ s
    << weight_exp per step; FxLI: u, v from 0 at each sample), int64, no spikes."""
    fc, li = graph.node("fc"), graph.node("li")
    a = (x.astype(np.int64) @ fc.weight.astype(np.int64).T) * (1 << fc.weight_exp)
    bias = li.bias_mant.astype(np.int64) << li.bias_exp
    n, t = x.shape[:2]
    u = np.zeros((n, 3), np.int64)
    v = np.zeros_like(u)
    out = np.zeros((n, t, 3), np.int64)

    def decay(r, d):   # trunc(r * (4096 - d) / 4096), toward zero
        p = r * (4096 - d)
        return np.sign(p) * (np.abs(p) >> 12)

    for k in range(t):
        u = decay(u, li.du + 1) + (a[:, k] << 6)
        v = np.clip(decay(v, li.dv) + u + bias, -(2 ** 23 - 1), 2 ** 23 - 1)
        out[:, k] = v
    return out


def test_every_stage_table_has_the_readout():
    from snncompile.backends.float_model import FLOAT
    from snncompile.backends.lava.lower import LOWER
    from snncompile.backends.sim.simulator import SIM
    from snncompile.mapping.split import SPLIT, core_role
    from snncompile.verify.fidelity import READING

    assert FLOAT.supports(LI)
    for table in (SIM, LOWER, SPLIT, READING):
        assert table.supports(FxLI), table.stage
    assert core_role(_readout_graph(), "li") == "neuron"


def test_simulator_gives_the_voltage_recurrence():
    from snncompile.backends.sim import Simulator

    graph = _readout_graph()
    x = _spikes((5, 12, 8))
    run = Simulator(graph).run(x, record_state=True)
    v = run.values["li"]
    assert v.dtype == np.int32 and v.shape == (5, 12, 3)
    np.testing.assert_array_equal(v, _numpy_li(graph, x))
    assert np.abs(v).max() > 1000 and (v < 0).any()          # not trivial
    np.testing.assert_array_equal(run.state["li"][1], v)       # state v is the value
    assert run.counts["li"]["spikes"] == 0
    assert run.counts["li"]["neuron_updates"] == 5 * 12 * 3
    assert run.overflow["li"]["would_spike"] == 0


def test_simulator_flags_a_voltage_that_would_spike():
    """Above vth_max << 6 a chip would spike and reset: the simulator does what Lava's
    LIFReset does there and counts it (strict: raises, naming the step)."""
    from snncompile.backends.sim import Simulator
    from snncompile.errors import OverflowDetected

    graph = _readout_graph(dv=0, du=4095, bias=(2 ** 18 - 1, 0, 0), weight_exp=0)
    graph.node("li").bias_exp = 4       # 2**22 - 16 a step: v = 2**23 - 32 at step 1
    x = np.zeros((1, 4, 8), np.uint8)
    run = Simulator(graph).run(x)
    assert run.overflow["li"]["would_spike"] == 2       # steps 1 and 3 (reset between)
    assert run.overflow["li"]["v_clip"] == 0
    with pytest.raises(OverflowDetected, match="would spike"):
        Simulator(graph, strict=True).run(x)


def test_decision_and_activity_read_the_values():
    from snncompile.verify.fidelity import READING, decision

    graph = _readout_graph(decision="last")
    node = graph.node("li")
    v_int = np.zeros((2, 3, 3), np.int32)
    v_int[0, -1] = [64, 0, 0]       # values 1.0, 0.5, -0.25: class 0
    v_int[1, -1] = [0, 0, 64 * 2]   # 0.0, 0.5, 1.75: class 2
    np.testing.assert_array_equal(decision(node, v_int), [0, 2])
    # the float model's records are values: the same decision, the same activity
    values = v_int / node.scale + node.offset
    np.testing.assert_array_equal(decision(node, values.astype(np.float32)), [0, 2])
    np.testing.assert_array_equal(READING.get(node).activity(node, values),
                                  READING.get(node).activity(node, v_int))
    # the offset counts once per step in a sum: sample 0 sums to (1, 1.5, -0.75)
    for rule, want in (("sum", [1, 1]), ("max", [0, 2])):
        node.decision = rule
        np.testing.assert_array_equal(decision(node, v_int), want)
    node.decision = "max"           # max over time differs from the last step
    v_int[0, 0] = [0, 64 * 8, 0]
    assert decision(node, v_int)[0] == 1


def test_limits_check_the_readout():
    from snncompile.errors import InputFileError
    from snncompile.ir.limits import check_fixed_graph
    from snncompile.target import load_target

    num = load_target("loihi2").numerics
    graph = _readout_graph()
    check_fixed_graph(graph, num)
    graph.node("li").bias_mant = np.array([1 << 20, 0, 0], np.int32)
    with pytest.raises(InputFileError, match="'li': bias_mant"):
        check_fixed_graph(graph, num)
    graph = _readout_graph()
    graph.node("li").bias_exp = 40
    with pytest.raises(InputFileError, match="'li': bias_exp"):
        check_fixed_graph(graph, num)
