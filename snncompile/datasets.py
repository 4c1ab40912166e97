"""Offline data sets for examples and tests (nothing is downloaded)."""
from __future__ import annotations

import numpy as np


def digits(steps: int = 16, test_fraction: float = 0.2, seed: int = 0, image: bool = False):
    """scikit-learn's 8x8 handwritten digits (1,797 samples, values 0..16) as graded input
    repeated over `steps` time steps. Returns (x_train, y_train, x_test, y_test) with x of
    shape (N, steps, 64) or (N, steps, 1, 8, 8) when `image`; a stratified split."""
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
        return np.repeat(a[:, None], steps, axis=1)
    return rep(xtr), ytr, rep(xte), yte
