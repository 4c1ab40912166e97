"""Quantisation in blocks (passes/quantize.py _WeightStats): the mantissas, sign modes,
errors and refusals are those of the whole-array computation it replaced."""
import math

import numpy as np
import pytest

from snncompile.errors import QuantizationError
from snncompile.passes import quantize as Q


def whole_array(w, sigma, e, step):
    """The former whole-array expression, kept here as the reference."""
    w = np.asarray(w, dtype=np.float64)
    wq = np.round(w * sigma / 2.0 ** e / step) * step
    err = float(np.linalg.norm(wq * 2.0 ** e / sigma - w))
    return wq.astype(np.int32), err


@pytest.mark.parametrize("chunk", [7, 64, 1 << 20])
@pytest.mark.parametrize("kind", ["mixed", "excitatory", "inhibitory", "zeros"])
def test_blocks_equal_whole_array(monkeypatch, chunk, kind):
    monkeypatch.setattr(Q, "CHUNK", chunk)
    rng = np.random.default_rng(chunk)
    w = rng.normal(0, 0.3, (37, 11, 3)).astype(np.float32)
    w = {"mixed": w, "excitatory": np.abs(w), "inhibitory": -np.abs(w),
         "zeros": np.zeros_like(w)}[kind]
    ws = Q._WeightStats(w)
    assert ws.finite and ws.sign_mode() == Q._sign_mode(np.asarray(w, np.float64))
    assert ws.absmax == float(np.abs(w.astype(np.float64)).max())
    assert math.isclose(ws.norm, float(np.linalg.norm(w.astype(np.float64))), rel_tol=1e-12)
    sigma, e = 417.3, 2
    step = 2 if kind == "mixed" else 1
    mode, lo, hi = ws.sign_mode()
    got, clipped, err, top = ws.quantize(sigma, e, step, lo, hi)
    want, want_err = whole_array(w, sigma, e, step)
    assert got.dtype == np.int32 and got.shape == w.shape
    assert np.array_equal(got, want) and clipped == 0
    assert top == int(np.abs(want).max()) and (top > 0) == (kind != "zeros")
    assert math.isclose(err, want_err, rel_tol=1e-9, abs_tol=1e-12)
    _, clipped, _, _ = ws.quantize(sigma * 100, e, step, lo, hi)   # now most fall outside
    w64 = np.round(w.astype(np.float64) * sigma * 100 / 2.0 ** e / step) * step
    assert clipped == int(np.count_nonzero((w64 < lo) | (w64 > hi)))


def test_non_finite_weight_found_in_any_block(monkeypatch):
    monkeypatch.setattr(Q, "CHUNK", 5)
    w = np.ones((4, 6))
    w[3, 5] = np.nan
    assert not Q._WeightStats(w).finite
    from snncompile.ir import LIF, Dense
    from snncompile.target import load_target
    with pytest.raises(QuantizationError, match="^fc: weight contains NaN or inf$"):
        Q._quantize_pair([Dense("fc", weight=w)], LIF("lif", shape=(4,), vth=1.0), [0], None,
                         load_target("loihi2"), 1000)
