"""examples/datasets/gestures.py: the generated DVS-style gesture set the MA-SNN gesture
example trains on. Deterministic, balanced, and its classes need time: clockwise and
counter-clockwise circles leave the same per-pixel counts, so only the order of events
tells them apart."""
import numpy as np
import pytest

from examples.datasets.gestures import CLASSES, gestures
from snncompile.errors import UnsupportedError


def test_shape_balance_and_determinism():
    xtr, ytr, xte, yte = gestures(n_train=22, n_test=11, steps=8, size=16, seed=3)
    assert xtr.shape == (22, 8, 2, 16, 16) and xtr.dtype == np.uint8
    assert set(np.unique(xtr)) <= {0, 1}
    assert np.bincount(ytr, minlength=11).tolist() == [2] * 11 and len(CLASSES) == 11
    again = gestures(n_train=22, n_test=11, steps=8, size=16, seed=3)
    assert all(np.array_equal(a, b) for a, b in zip((xtr, ytr, xte, yte), again))
    assert not np.array_equal(xtr, gestures(n_train=22, n_test=11, steps=8, size=16,
                                            seed=4)[0])


def test_on_events_lead_off_events_trail_a_sweep():
    """Class 0 sweeps east: the ON edge (channel 0) lies east of the OFF edge (channel 1)."""
    x, y, _, _ = gestures(n_train=33, n_test=0, steps=12, size=32, noise=0.0, seed=1)
    cols = np.arange(32)
    for sample in x[y == 0]:
        on, off = sample[:, 0].sum((0, 1)), sample[:, 1].sum((0, 1))
        assert (on * cols).sum() / on.sum() > (off * cols).sum() / off.sum()


def test_circles_differ_in_time_not_in_counts():
    """A clockwise and a counter-clockwise circle through the same points leave nearly the
    same per-pixel counts; their first halves differ."""
    from examples.datasets import gestures as g

    def one(label):
        rng = np.random.default_rng(7)          # same radius, phase and centre
        return g._sample(rng, label, 32, 32, 1.0, 0.0)
    cw, ccw = one(8), one(9)
    counts_cw, counts_ccw = cw.sum(0).astype(int), ccw.sum(0).astype(int)
    overlap = np.minimum(counts_cw, counts_ccw).sum() / max(counts_cw.sum(), 1)
    assert overlap > 0.6
    half = cw.shape[0] // 2
    first = np.minimum(cw[:half].sum(0), ccw[:half].sum(0)).sum() / cw[:half].sum()
    assert first < overlap - 0.2


def test_bad_arguments_are_refused():
    with pytest.raises(UnsupportedError, match="steps"):
        gestures(steps=2)
    with pytest.raises(UnsupportedError, match="size"):
        gestures(size=4)
