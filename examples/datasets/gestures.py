"""Generated DVS-style gesture recordings: 11 classes of motion on two polarity channels.

A stand-in for DVS128 Gesture (11 classes, two polarities, events binned into T frames)
that can be generated offline at any size and step count. Each sample shows one blob (a
disc of random radius at a random start position) that moves during the recording; the
class is the motion, never the shape or where it starts:

    0-7   a straight sweep in one of 8 directions (E, NE, N, NW, W, SW, S, SE)
    8     a clockwise circle          9   a counter-clockwise circle
    10    in place: the blob grows and shrinks (a "clap")

A DVS pixel fires ON (channel 0) where brightness rises and OFF (channel 1) where it falls:
here, ON where the blob arrives (inside it at step t, outside at t-1) and OFF where it
leaves, each with probability `p_on` per pixel and step; every pixel also fires with
probability `noise` per channel and step. So a frame carries only the blob's leading and
trailing edges, as a real event camera would, and the motion's direction is in the ON/OFF
layout and in how it changes over time. Deterministic from `seed`.

    xtr, ytr, xte, yte = gestures(steps=16, size=32, seed=0)   # x: (N, 16, 2, 32, 32) 0/1
"""
from __future__ import annotations

import numpy as np

from snncompile.errors import UnsupportedError

CLASSES = ("sweep E", "sweep NE", "sweep N", "sweep NW", "sweep W", "sweep SW", "sweep S",
           "sweep SE", "circle cw", "circle ccw", "clap")


def _path(rng, label: int, steps: int, size: int):
    """Centre (row, col) and radius of the blob at each of steps + 1 instants."""
    t = np.linspace(0.0, 1.0, steps + 1)
    r0 = rng.uniform(0.08, 0.14) * size
    radius = np.full(steps + 1, r0)
    if label < 8:                                  # a straight sweep
        angle = label * np.pi / 4
        d = np.array([-np.sin(angle), np.cos(angle)])   # rows grow downwards
        length = rng.uniform(0.35, 0.5) * size
        start = size / 2 - d * length / 2 + rng.uniform(-0.1, 0.1, 2) * size
        centre = start[None, :] + t[:, None] * d[None, :] * length
    elif label < 10:                               # a circle, one turn
        sign = -1.0 if label == 8 else 1.0             # cw on screen: angle decreasing
        phase = rng.uniform(0, 2 * np.pi)
        rad = rng.uniform(0.18, 0.26) * size
        a = phase + sign * 2 * np.pi * t
        mid = size / 2 + rng.uniform(-0.08, 0.08, 2) * size
        centre = np.stack([mid[0] - rad * np.sin(a), mid[1] + rad * np.cos(a)], axis=1)
    else:                                          # in place, grows and shrinks twice
        mid = size / 2 + rng.uniform(-0.15, 0.15, 2) * size
        centre = np.repeat(mid[None, :], steps + 1, axis=0)
        radius = r0 * (1.0 + 0.9 * np.sin(2 * np.pi * 2 * t) ** 2)
    return centre, radius


def _sample(rng, label: int, steps: int, size: int, p_on: float, noise: float):
    centre, radius = _path(rng, label, steps, size)
    rows, cols = np.mgrid[0:size, 0:size]
    inside = ((rows[None] - centre[:, 0, None, None]) ** 2
              + (cols[None] - centre[:, 1, None, None]) ** 2) <= radius[:, None, None] ** 2
    on = inside[1:] & ~inside[:-1]                    # the blob arrived: brighter
    off = inside[:-1] & ~inside[1:]                   # the blob left: darker
    edges = np.stack([on, off], axis=1)               # (steps, 2, size, size)
    fire = edges & (rng.random(edges.shape) < p_on)
    fire |= rng.random(edges.shape) < noise
    return fire.astype(np.uint8)


def gestures(n_train: int = 440, n_test: int = 110, steps: int = 16, size: int = 32,
             p_on: float = 0.9, noise: float = 0.005, seed: int = 0):
    """The data set above: (x_train, y_train, x_test, y_test); x uint8 0/1 of shape
    (N, steps, 2, size, size), y int64 in 0..10 (balanced, shuffled)."""
    if steps < 4:
        raise UnsupportedError(f"gestures: steps ({steps}) must be >= 4 to show a motion")
    if size < 8:
        raise UnsupportedError(f"gestures: size ({size}) must be at least 8")
    rng = np.random.default_rng(seed)
    out = []
    for n in (int(n_train), int(n_test)):
        y = np.arange(n) % len(CLASSES)
        rng.shuffle(y)
        x = np.stack([_sample(rng, int(c), steps, size, p_on, noise) for c in y]) \
            if n else np.zeros((0, steps, 2, size, size), np.uint8)
        out += [x, y.astype(np.int64)]
    return tuple(out)
