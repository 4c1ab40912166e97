"""Our (C, H, W) layout versus Lava's (W, H, C), for the Lava lowering and the netx runner.

Lava keeps images as (W, H, C); our graph keeps (C, H, W). Every lowered node's Lava output
is a port whose C-order flat index j holds our flat element `perm[j]` (`perm` None: the
identity). Inputs and biases are permuted on the way in (`to_lava`), recorded values on
the way out (`from_lava`), so callers only ever see our layout. Imports no Lava module.
"""
from __future__ import annotations

import numpy as np


def natural_perm(shape: tuple[int, ...]) -> np.ndarray | None:
    """perm of a node of our `shape` in its Lava layout: (C, H, W) -> (W, H, C); None for
    shapes that are not images (their flat order is the same in both)."""
    if len(shape) != 3:
        return None
    return np.arange(int(np.prod(shape))).reshape(shape).transpose(2, 1, 0).ravel()


def lava_shape(shape: tuple[int, ...]) -> tuple[int, ...]:
    """The Lava shape of a node of our `shape`: images reversed, others unchanged."""
    return tuple(shape[::-1]) if len(shape) == 3 else tuple(shape)


def to_lava(x: np.ndarray, shape: tuple[int, ...], perm, lava_shape) -> np.ndarray:
    """Our layout (..., *shape) -> Lava layout (..., *lava_shape)."""
    lead = x.shape[: x.ndim - len(shape)]
    flat = x.reshape(lead + (-1,))
    if perm is not None:
        flat = flat[..., perm]
    return flat.reshape(lead + tuple(lava_shape))


def from_lava(flat: np.ndarray, perm: np.ndarray | None) -> np.ndarray:
    """Lava flat order -> our flat order along the last axis."""
    if perm is None:
        return flat
    out = np.empty_like(flat)
    out[..., perm] = flat
    return out
