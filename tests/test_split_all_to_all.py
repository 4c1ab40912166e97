"""The dense split's fast paths give exactly the blocks, usages, synapse counts and owners
of its plain search (a bisection over each block's end with `cost` probed end by end):
`split._split_all_to_all` (every weight non-zero; compared with the search over a mask of
ones), `split._last_fit` (every end of a block at once) and `split._block_usage` (the
usages of all blocks at once), over random limits, densities, output axons, biases and
work caps."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from snncompile.ir import FxDense
from snncompile.mapping import split as S
from snncompile.target import load_target


def _searched(syn: S._DenseSyn, out_ax, lim, max_syn):
    """The general search on the same numbers: a mask of ones, the dense bits per synapse."""
    probe = S._DenseSyn.__new__(S._DenseSyn)
    probe.__dict__.update(syn.__dict__)
    probe.nz = np.ones((syn.n_out, syn.n_in), bool)
    real = S._split_all_to_all, S._LAST_FIT_ELEMENTS, S._block_usage
    S._split_all_to_all = None     # not reached: nz is set
    S._LAST_FIT_ELEMENTS = -1      # the search, not `_last_fit`
    S._block_usage = lambda *a: None   # `cost` block by block
    try:
        return S._split_dense("L", probe, out_ax, lim, max_syn)
    finally:
        S._split_all_to_all, S._LAST_FIT_ELEMENTS, S._block_usage = real


@pytest.mark.parametrize("seed", range(40))
def test_all_to_all_split_matches_search(seed):
    rng = np.random.default_rng(seed)
    base = load_target(str(rng.choice(["loihi1", "loihi2"]))).limits
    n_in = int(rng.integers(1, 300))
    n = int(rng.integers(1, 5000))
    lim = dataclasses.replace(
        base, neurons=int(rng.integers(1, 3000)),
        output_axons=int(rng.integers(8, 40000)),
        synapse_bits=int(rng.integers(n_in * 80 + 200, 3_000_000)),
        input_axons=max(base.input_axons, n_in + 1))
    w = rng.integers(1, 100, (n, n_in)).astype(np.int32)   # no zero: all-to-all
    bias = rng.integers(-50, 50, n).astype(np.int32) if rng.random() < 0.4 else None
    node = FxDense("d", weight=w, weight_exp=0, num_weight_bits=int(rng.choice([6, 8])),
                   sign_mode="excitatory", num_message_bits=0, bias_mant=bias,
                   bias_exp=0)
    syn = S._DenseSyn(node, n, lim)
    assert syn.nz is None
    out_ax = rng.integers(1, 6, n).astype(np.int64)
    max_syn = None if rng.random() < 0.5 else int(rng.integers(1, n_in * 400))
    try:
        want = _searched(syn, out_ax, lim, max_syn)
    except Exception as exc:   # a neuron that cannot fit: both refuse alike
        with pytest.raises(type(exc)):
            S._split_dense("L", syn, out_ax, lim, max_syn)
        return
    got = S._split_dense("L", syn, out_ax, lim, max_syn)
    assert got[0] == want[0]
    assert [u.tolist() for u in got[1]] == [u.tolist() for u in want[1]]
    assert got[2] == want[2]
    assert got[3].dtype == want[3].dtype and np.array_equal(got[3], want[3])


@pytest.mark.parametrize("seed", range(40))
def test_sparse_split_matches_search(seed, monkeypatch):
    """`split._last_fit` (every end of a block at once) finds the ends of the search."""
    rng = np.random.default_rng(1000 + seed)
    base = load_target(str(rng.choice(["loihi1", "loihi2"]))).limits
    n_in = int(rng.integers(1, 300))
    n = int(rng.integers(1, 5000))
    lim = dataclasses.replace(
        base, neurons=int(rng.integers(1, 3000)),
        output_axons=int(rng.integers(8, 40000)),
        synapse_bits=int(rng.integers(n_in * 80 + 200, 3_000_000)),
        input_axons=int(rng.integers(n_in // 2 + 2, n_in + 3)) if rng.random() < 0.3
        else n_in + 2)
    density = float(rng.choice([0.02, 0.3, 0.9, 0.999]))
    w = (rng.random((n, n_in)) < density) * rng.integers(1, 100, (n, n_in))
    w[0, 0] = 0                                            # not all-to-all
    if rng.random() < 0.3:
        w[rng.integers(0, n, n // 3)] = 0                  # empty rows
    bias = rng.integers(-50, 50, n).astype(np.int32) if rng.random() < 0.4 else None
    node = FxDense("d", weight=w.astype(np.int32), weight_exp=0,
                   num_weight_bits=int(rng.choice([6, 8])), sign_mode="excitatory",
                   num_message_bits=0, bias_mant=bias, bias_exp=0)
    syn = S._DenseSyn(node, n, lim)
    assert syn.nz is not None
    out_ax = rng.integers(1, 6, n).astype(np.int64)
    max_syn = None if rng.random() < 0.5 else int(rng.integers(1, n_in * 400))
    monkeypatch.setattr(S, "_LAST_FIT_ELEMENTS", -1)         # the search
    monkeypatch.setattr(S, "_block_usage", lambda *a: None)   # `cost` block by block
    try:
        want = S._split_dense("L", syn, out_ax, lim, max_syn)
    except Exception as exc:   # a neuron that cannot fit: both refuse alike
        monkeypatch.undo()
        with pytest.raises(type(exc)):
            S._split_dense("L", syn, out_ax, lim, max_syn)
        return
    monkeypatch.undo()
    got = S._split_dense("L", syn, out_ax, lim, max_syn)
    assert got[0] == want[0]
    assert [u.tolist() for u in got[1]] == [u.tolist() for u in want[1]]
    assert got[2] == want[2]
    assert np.array_equal(got[3], want[3])
