"""The quantiser and pool folding behind their rule tables: which float node types they
handle, how they refuse the others, and inheritance of rules."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from snncompile.errors import UnsupportedError
from snncompile.ir import (LI, LIF, Attention, AvgPool1d, AvgPool2d, Conv1d, Conv2d, Dense,
                           Flatten, FxDense, FxLIF, Graph, Input, Output, SumPool1d, SumPool2d,
                           RecDense)
from snncompile.passes.fold import FOLD_INTO, POOLS, fold_pools
from snncompile.passes.quantize import QUANTIZE, quantize
from snncompile.target import load_target

L2 = load_target("loihi2")


def pooled(pool_type, after=Dense):
    rng = np.random.default_rng(0)
    nodes = [Input("in", shape=(1, 4, 4)),
             Conv2d("conv1", weight=rng.normal(size=(2, 1, 3, 3)), padding=(1, 1)),
             LIF("lif1", shape=(2, 4, 4), vth=0.5),
             pool_type("pool", kernel=(2, 2))]
    if after is Dense:
        nodes += [Flatten("flat"), Dense("fc", weight=rng.normal(size=(3, 8)))]
    else:
        nodes += [Conv2d("fc", weight=rng.normal(size=(3, 2, 1, 1)))]
    shape = (3,) if after is Dense else (3, 2, 2)
    return Graph.sequential(nodes + [LIF("lif2", shape=shape, vth=0.5), Output("out")])


def test_quantize_table_lists_the_float_node_types():
    assert set(QUANTIZE.types) == {Input, Flatten, Output, Dense, Conv2d, Conv1d, LIF,
                                   Attention, SumPool2d, SumPool1d, LI, RecDense}
    assert QUANTIZE.rule(AvgPool2d("p")) is QUANTIZE.rule(SumPool2d("p"))  # inherited
    assert QUANTIZE.rule(AvgPool1d("p")) is QUANTIZE.rule(SumPool1d("p"))


def test_a_fixed_point_node_in_a_float_graph_is_refused_in_one_line():
    g = Graph.sequential([Input("in", shape=(2,)), FxDense("fc", weight=np.ones((2, 2), int)),
                          FxLIF("lif", shape=(2,)), Output("out")])
    with pytest.raises(UnsupportedError) as err:
        quantize(g, L2)
    msg = str(err.value)
    assert "\n" not in msg
    assert msg.startswith("fc: FxDense has no quantisation rule (supported: ")
    assert "LIF" in msg and "Attention" in msg


def test_an_unfolded_pool_is_refused_pointing_at_fold_pools():
    with pytest.raises(UnsupportedError,
                       match=r"^pool: SumPool2d cannot be quantised here; run fold_pools"):
        quantize(pooled(SumPool2d), L2)


@dataclasses.dataclass
class TiedDense(Dense):
    """A subclass of a registered float type with no rules of its own."""


def test_a_dense_subclass_quantises_like_dense():
    w = np.array([[0.5, -0.25, 0.125], [0.3, 0.2, -0.1]])

    def graph(cls):
        return Graph.sequential([Input("in", shape=(3,)), cls("fc", weight=w),
                                 LIF("lif", shape=(2,), vth=1.0), Output("out")])
    (a, ra), (b, rb) = quantize(graph(Dense), L2), quantize(graph(TiedDense), L2)
    assert type(b.node("fc")) is FxDense
    assert np.array_equal(a.node("fc").weight, b.node("fc").weight)
    assert [r.to_json() for r in ra] == [r.to_json() for r in rb]


# ------------------------------------------------------------------ folding
def test_fold_tables_and_pool_factors():
    assert set(POOLS.types) == {SumPool2d, AvgPool2d, SumPool1d, AvgPool1d}
    assert set(FOLD_INTO.types) == {Flatten, Dense, Conv2d, Conv1d}
    assert POOLS.rule(SumPool2d("p"))(SumPool2d("p")) == 1.0
    assert POOLS.rule(AvgPool2d("p"))(AvgPool2d("p", kernel=(2, 3))) == 1 / 6
    assert POOLS.rule(SumPool1d("p"))(SumPool1d("p", kernel=3)) == 1.0
    assert POOLS.rule(AvgPool1d("p"))(AvgPool1d("p", kernel=3)) == 1 / 3


@pytest.mark.parametrize("after", [Dense, Conv2d])
def test_folded_average_pool_weights_are_a_quarter_of_the_sum_pools(after):
    s, changed = fold_pools(pooled(SumPool2d, after))
    a, _ = fold_pools(pooled(AvgPool2d, after))
    assert changed and "pool" not in s and "pool" not in a
    ws, wa = s.node("fc").weight, a.node("fc").weight
    assert ws.shape == wa.shape and np.allclose(wa * 4, ws)
    if after is Conv2d:
        assert s.node("fc").stride == (2, 2) and ws.shape[2:] == (2, 2)
    else:
        assert ws.shape == (3, 32) and s.inputs("flat") == ["lif1"]


def test_a_pool_feeding_what_it_cannot_fold_into_is_refused():
    g = Graph.sequential([Input("in", shape=(1, 4, 4)),
                          Conv2d("c", weight=np.ones((1, 1, 1, 1))),
                          LIF("l", shape=(1, 4, 4)), SumPool2d("pool"),
                          LIF("l2", shape=(1, 2, 2)), Output("out")])
    with pytest.raises(UnsupportedError, match=r"^pool: a pooling layer must feed exactly one"):
        fold_pools(g)
