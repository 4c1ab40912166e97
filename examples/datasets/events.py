"""Generated event streams whose classes differ in WHEN things happen, and digits as images.

`event_timing` draws, per sample, one random spatial pattern (a few pixels of a 3x3 or
4x4 patch at a random position) and shows it as short bursts on two polarity channels,
A (channel 0) and B (channel 1). The class is the timing, never the pattern:

    0: A early, B late      (A -> B)
    1: B early, A late      (B -> A)
    2: A and B together, early
    3: A and B together, late

"early" bursts start at a step drawn from [1, T/4], "late" ones from [T/2, 3T/4 - 1];
a burst lasts `burst` steps, during which each pattern pixel fires with probability
`p_on` per step. Every pixel also fires with probability `noise` at every step. Summed over
time, A and B carry the same expected counts in every class, so a model that only counts
spikes per pixel cannot tell classes 0/1 from each other, nor 2 from 3.
Everything is deterministic from `seed`.

    xtr, ytr, xte, yte = event_timing(seed=0)     # x: (N, 16, 2, 8, 8) uint8 0/1
"""
from __future__ import annotations

import numpy as np

from snncompile.errors import UnsupportedError

CLASSES = ("A->B", "B->A", "AB early", "AB late")


def _sample(rng, label, steps, h, w, burst, p_on, noise):
    x = (rng.random((steps, 2, h, w)) < noise).astype(np.uint8)
    size = int(rng.integers(3, 5))
    patch = rng.random((size, size)) < 0.6
    patch[size // 2, size // 2] = True
    r0, c0 = int(rng.integers(0, h - size + 1)), int(rng.integers(0, w - size + 1))
    mask = np.zeros((h, w), dtype=bool)
    mask[r0:r0 + size, c0:c0 + size] = patch

    def early():
        return int(rng.integers(1, steps // 4 + 1))

    def late():
        return int(rng.integers(steps // 2, 3 * steps // 4))

    if label == 0:
        starts = {0: early(), 1: late()}
    elif label == 1:
        starts = {1: early(), 0: late()}
    elif label == 2:
        s = early()
        starts = {0: s, 1: s}
    else:
        s = late()
        starts = {0: s, 1: s}
    for ch, start in starts.items():
        for t in range(start, min(start + burst, steps)):
            fire = mask & (rng.random((h, w)) < p_on)
            x[t, ch][fire] = 1
    return x


def event_timing(n_train: int = 480, n_test: int = 160, steps: int = 16,
                 size: tuple[int, int] = (8, 8), burst: int = 3, p_on: float = 0.8,
                 noise: float = 0.02, seed: int = 0):
    """The timing data set above. Returns (x_train, y_train, x_test, y_test); x is uint8 of
    shape (N, steps, 2, H, W) with values 0/1, y int64 in 0..3 (balanced, shuffled)."""
    h, w = int(size[0]), int(size[1])
    if steps < 8:
        raise UnsupportedError(f"event_timing: steps ({steps}) must be >= 8 so that early "
                               "and late bursts do not overlap")
    if h < 4 or w < 4:
        raise UnsupportedError(f"event_timing: size ({h}x{w}) must be at least 4x4")
    rng = np.random.default_rng(seed)
    out = []
    for n in (n_train, n_test):
        y = np.arange(n) % len(CLASSES)
        rng.shuffle(y)
        x = np.stack([_sample(rng, int(c), steps, h, w, burst, p_on, noise) for c in y]) \
            if n else np.zeros((0, steps, 2, h, w), np.uint8)
        out += [x, y.astype(np.int64)]
    return tuple(out)


def digits_images(steps: int = 16, test_fraction: float = 0.2, seed: int = 0,
                  encoding: str = "graded"):
    """scikit-learn's 8x8 digits as frames: (x_train, y_train, x_test, y_test) with x of
    shape (N, steps, 1, 8, 8). encoding "graded": the pixel values 0..16 repeated at every
    step; "bernoulli": 0/1 spikes, each pixel firing with probability value/16 at each step
    independently (deterministic from `seed`), so no single frame holds the whole image."""
    from examples.datasets.digits import digits
    if encoding not in ("graded", "bernoulli"):
        raise UnsupportedError(f"digits_images: encoding '{encoding}' is not supported; "
                               "supported: graded, bernoulli")
    xtr, ytr, xte, yte = digits(steps=steps, test_fraction=test_fraction, seed=seed,
                                image=True)
    if encoding == "bernoulli":
        rng = np.random.default_rng(seed)
        xtr = (rng.random(xtr.shape) < xtr / 16.0).astype(np.uint8)
        xte = (rng.random(xte.shape) < xte / 16.0).astype(np.uint8)
    return xtr, ytr, xte, yte
