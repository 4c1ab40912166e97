"""The mapper's compiled dense split (snncompile/mapping/kernels.py) cuts every layer
exactly as its numpy search does: the same blocks, usages and synapse counts, on random
sparse layers with every limit binding in turn, with and without a work cap and a bias
axon; and whole networks map the same under SNNCOMPILE_MAP_KERNEL=numba and =numpy."""
from __future__ import annotations

import dataclasses
import re

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hypothesis_profile import examples
from snncompile.errors import UnsupportedError
from snncompile.ir.nodes import FxDense
from snncompile.mapping import split as S
from snncompile.target import load_target


def _layer(n_out, n_in, density, bits, bias, seed):
    rng = np.random.default_rng(seed)
    w = (rng.integers(-127, 128, (n_out, n_in)) * (rng.random((n_out, n_in)) < density))
    w[0, 0] = 3                       # at least one zero elsewhere and one non-zero
    w[-1, -1] = 0
    return FxDense("fc", weight=w.astype(np.int32), num_weight_bits=bits,
                   bias_mant=np.ones(n_out, np.int32) if bias else None)


def _split(monkeypatch, how, node, lim, out_ax, max_syn):
    monkeypatch.setenv("SNNCOMPILE_MAP_KERNEL", how)
    syn = S._DenseSyn(node, node.weight.shape[0], lim)
    ranges, usages, synapses, owner = S._split_dense("fc", syn, out_ax, lim, max_syn)
    return ranges, [list(map(int, u)) for u in usages], synapses, owner.tolist()


@settings(max_examples=examples(40), deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(n_out=st.integers(1, 300), n_in=st.integers(1, 60),
       density=st.floats(0.02, 0.95), bits=st.sampled_from([1, 4, 8]),
       bias=st.booleans(), target=st.sampled_from(["loihi1", "loihi2"]),
       shrink=st.sampled_from(["none", "neurons", "input_axons", "output_axons",
                               "synapse_bits"]),
       cap=st.one_of(st.none(), st.integers(1, 2000)), seed=st.integers(0, 2**16))
def test_the_compiled_split_cuts_as_the_numpy_search(monkeypatch, n_out, n_in, density,
                                                      bits, bias, target, shrink, cap,
                                                      seed):
    lim = load_target(target).limits
    node = _layer(n_out, n_in, density, bits, bias, seed)
    out_ax = np.random.default_rng(seed + 1).integers(1, 4, n_out)
    small = {"neurons": 17, "input_axons": max(n_in // 2, 2) + bias,
             "output_axons": 40, "synapse_bits": 6000}
    if shrink != "none":
        lim = dataclasses.replace(lim, **{shrink: small[shrink]})
    try:
        want = _split(monkeypatch, "numpy", node, lim, out_ax, cap)
    except Exception as exc:         # one neuron too big: both refuse it the same way
        with pytest.raises(type(exc), match=re.escape(str(exc))):
            _split(monkeypatch, "numba", node, lim, out_ax, cap)
        return
    assert _split(monkeypatch, "numba", node, lim, out_ax, cap) == want


def test_a_large_layer_uses_the_kernel_and_a_bad_choice_is_refused(monkeypatch):
    monkeypatch.delenv("SNNCOMPILE_MAP_KERNEL", raising=False)
    assert S.map_kernel(S.MAP_KERNEL_ELEMENTS) and not S.map_kernel(1000)
    monkeypatch.setenv("SNNCOMPILE_MAP_KERNEL", "numpy")
    assert not S.map_kernel(10 ** 9)
    monkeypatch.setenv("SNNCOMPILE_MAP_KERNEL", "fast")
    with pytest.raises(UnsupportedError, match="SNNCOMPILE_MAP_KERNEL='fast'"):
        S.map_kernel(1)
