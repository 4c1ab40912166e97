"""Offline data sets for examples and tests (nothing is downloaded)."""
from __future__ import annotations

import numpy as np


def rate_code(values: np.ndarray, steps: int, vmax: int) -> np.ndarray:
    """Deterministic rate code: a value v in [0, vmax] spikes round(v/vmax * steps) times,
    evenly spaced (a spike at step t when floor((t+1) v / vmax) > floor(t v / vmax))."""
    t = np.arange(steps + 1).reshape((steps + 1,) + (1,) * values.ndim)
    acc = (t * values[None]) // vmax
    return np.moveaxis((np.diff(acc, axis=0) > 0).astype(np.uint8), 0, 1)


def digits(steps: int = 16, test_fraction: float = 0.2, seed: int = 0, image: bool = False,
           spikes: bool = False):
    """scikit-learn's 8x8 handwritten digits (1,797 samples, values 0..16) as graded input
    repeated over `steps` time steps, or (`spikes=True`) rate-coded binary spikes. Returns
    (x_train, y_train, x_test, y_test) with x of shape (N, steps, 64) or (N, steps, 1, 8, 8)
    when `image`; a stratified split."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    x = d.images.astype(np.int64) if image else d.data.astype(np.int64)
    if image:
        x = x[:, None]
    y = d.target.astype(np.int64)
    xtr, xte, ytr, yte = train_test_split(x, y, test_size=test_fraction, random_state=seed,
                                          stratify=y)

    def rep(a):
        if spikes:
            return rate_code(a, steps, 16)
        return np.repeat(a[:, None], steps, axis=1)
    return rep(xtr), ytr, rep(xte), yte
