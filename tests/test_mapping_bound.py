"""The lower bound's conv-halo term (`split._conv_fanin_per_neuron`) against brute force on
small layers: never above the fan-in per neuron of ANY set of neurons that fits one core
(every subset of positions tried), so the bound holds for every split, not only the
splitter's rectangular tiles; and where it applies its staircase programme, exactly the
best such set (a staircase can beat every rectangle)."""
from __future__ import annotations

import itertools

import numpy as np
import pytest

from snncompile.ir.nodes import FxConv2d
from snncompile.mapping.split import _ConvSyn, _conv_fanin_per_neuron
from snncompile.target import load_target

LOIHI1 = load_target("loihi1")


def _conv(cin, cout, hin, k, stride, pad, groups=1, limits=None):
    node = FxConv2d("c", weight=np.ones((cout, cin // groups, k, k), np.int32),
                    stride=(stride, stride), padding=(pad, pad), groups=groups)
    h = (hin + 2 * pad - k) // stride + 1
    spec = LOIHI1
    if limits is not None:
        import dataclasses
        spec = dataclasses.replace(spec, limits=dataclasses.replace(spec.limits, **limits))
    return _ConvSyn(node, (cin, hin, hin), (cout, h, h), spec), spec.limits


def _brute(info, lim) -> float:
    best = np.inf
    for c0, c1 in itertools.combinations(range(info.c + 1), 2):
        for y0, y1 in itertools.combinations(range(info.h + 1), 2):
            for x0, x1 in itertools.combinations(range(info.w + 1), 2):
                ci0, ci1, r0, r1, q0, q1 = info.region(c0, c1, y0, y1, x0, x1)
                n = (c1 - c0) * (y1 - y0) * (x1 - x0)
                fan = (ci1 - ci0) * max(r1 - r0, 0) * max(q1 - q0, 0)
                if n <= lim.neurons and fan <= lim.input_axons:
                    best = min(best, fan / n)
    return 0.0 if best == np.inf else best


CASES = [(1, 2, 6, 3, 1, 1), (2, 4, 7, 3, 2, 1), (2, 2, 6, 2, 2, 0), (1, 3, 5, 1, 1, 0),
         (4, 4, 6, 3, 1, 0), (3, 2, 8, 3, 2, 0), (2, 4, 6, 3, 1, 1, 2)]


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("limits", [dict(neurons=6, input_axons=20),
                                    dict(neurons=16, input_axons=40),
                                    dict(neurons=3, input_axons=200)])
def test_halo_term_is_at_most_the_best_rectangle_anywhere(case, limits):
    info, lim = _conv(*case, limits=limits)
    assert _conv_fanin_per_neuron(info, lim) <= _brute(info, lim) + 1e-12


def _best_set(cin, cout, hin, k, s, p, n_lim, a_lim) -> float:
    """Fewest input axons per neuron over every set of output positions (all channels
    at them, up to the neuron limit) whose inputs fit the input-axon limit."""
    h = (hin + 2 * p - k) // s + 1
    masks = []
    for y, x in itertools.product(range(h), range(h)):
        m = 0
        for i, j in itertools.product(range(k), range(k)):
            r, q = y * s - p + i, x * s - p + j
            if 0 <= r < hin and 0 <= q < hin:
                m |= 1 << (r * hin + q)
        masks.append(m)
    cover, size, best = [0] * (1 << len(masks)), [0] * (1 << len(masks)), np.inf
    for sub in range(1, 1 << len(masks)):
        low = sub & -sub
        cover[sub] = cover[sub ^ low] | masks[low.bit_length() - 1]
        size[sub] = size[sub ^ low] + 1
        fan = cin * bin(cover[sub]).count("1")
        if fan <= a_lim:
            best = min(best, fan / min(cout * size[sub], n_lim))
    return 0.0 if best == np.inf else best


def _random_cases(n, seed=0):
    rng = np.random.default_rng(seed)
    out = []
    while len(out) < n:
        k, s, hin = int(rng.integers(1, 4)), int(rng.integers(1, 3)), int(rng.integers(3, 8))
        p = int(rng.integers(0, k))
        h = (hin + 2 * p - k) // s + 1
        if 1 <= h <= 4:
            out.append((int(rng.integers(1, 3)), int(rng.integers(1, 4)), hin, k, s, p,
                        int(rng.integers(1, 13)), int(rng.integers(4, 48))))
    return out


@pytest.mark.parametrize("case", _random_cases(30) + [(1, 1, 4, 3, 1, 1, 6, 13)])
def test_halo_term_is_never_above_any_set_of_neurons(case):
    *geom, n_lim, a_lim = case
    info, lim = _conv(*geom, limits=dict(neurons=n_lim, input_axons=a_lim))
    got, best = _conv_fanin_per_neuron(info, lim), _best_set(*case)
    assert got <= best + 1e-12


def test_a_staircase_beats_every_rectangle_and_the_bound_sees_it():
    """On a 4 x 4 map (3 x 3 kernel, padding 1) with 6 neurons and 13 input axons per core,
    the best rectangle (2 x 3 at the corner) reads 12 inputs, 2.0 per neuron, while the
    first row and two neurons of the second read 11: the bound takes 11 / 6."""
    info, lim = _conv(1, 1, 4, 3, 1, 1, limits=dict(neurons=6, input_axons=13))
    assert _brute(info, lim) == pytest.approx(2.0)
    assert _conv_fanin_per_neuron(info, lim) == pytest.approx(11 / 6)
    cells = [(0, 0), (0, 1), (0, 2), (0, 3), (1, 0), (1, 1)]
    read = {(y + i, x + j) for y, x in cells for i in (-1, 0, 1) for j in (-1, 0, 1)
            if 0 <= y + i < 4 and 0 <= x + j < 4}
    assert len(read) == 11


@pytest.mark.parametrize("n_in,k,s,p", [(10, 3, 1, 1), (9, 3, 2, 1), (8, 2, 2, 1), (7, 1, 1, 0),
                                        (12, 5, 2, 2), (9, 3, 3, 0), (6, 4, 1, 3)])
def test_nested_reads_is_exact_per_axis(n_in, k, s, p):
    """Runs from an end are reported best only when no t outputs read fewer inputs (every
    subset of the axis tried), and with the inputs such runs read."""
    from snncompile.mapping.split import _axis_reads, _nested_reads
    n_out = (n_in + 2 * p - k) // s + 1
    lo, hi = _axis_reads(n_out, s, p, k, n_in)
    fewest = [0] + [min(len(set().union(*(range(lo[i], hi[i]) for i in sub)))
                        for sub in itertools.combinations(range(n_out), t))
                    for t in range(1, n_out + 1)]
    got = _nested_reads(lo, hi)
    runs = [[len(set().union(*(range(lo[i], hi[i]) for i in idx[:t]))) if t else 0
             for t in range(n_out + 1)] for idx in (range(n_out), range(n_out)[::-1])]
    if got is None:
        assert all(r != fewest for r in runs)
    else:
        assert list(got[1]) == fewest


def _subadditive_brute(bpw, kmax, lim) -> bool:
    from snncompile.mapping.split import axon_bits
    k = np.arange(0, kmax + 1, dtype=np.int64)
    bits = axon_bits(k, bpw, lim)
    a, b = np.meshgrid(k, k, indexing="ij")
    m = a + b <= kmax
    return bool(np.all(bits[(a + b)[m]] <= bits[a[m]] + bits[b[m]]))


@pytest.mark.parametrize("target", ["loihi1", "loihi2"])
def test_subadditivity_check_over_residues_equals_every_pair(target):
    """`_subadditive` checks pairs below the group size only; the same answer as every
    pair a + b <= kmax, on encodings where it holds and where it does not."""
    import dataclasses

    from snncompile.mapping.split import _subadditive
    base = load_target(target).limits
    seen = set()
    for size, head, word in [(64, 10, 64), (4, 0, 8), (5, 3, 16), (8, 40, 8), (3, 1, 2)]:
        lim = dataclasses.replace(base, synapse_group_size=size,
                                  synapse_group_header_bits=head, synapse_word_bits=word)
        for bpw in (1, 3, 8, 9):
            for kmax in (1, 2, 5, 17, 130, 300):
                got = _subadditive(bpw, kmax, lim)
                assert got == _subadditive_brute(bpw, kmax, lim), (size, head, word, bpw,
                                                                   kmax)
                seen.add(got)
    assert seen == {True, False}
