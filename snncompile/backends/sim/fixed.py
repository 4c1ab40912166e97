"""Integer primitives of Loihi's neurocore as Lava's bit-accurate models compute them.

Each function states the hardware reason for its shift, wrap or clip. All work on int64
numpy arrays (wide enough for every intermediate) and reproduce the narrower registers
explicitly.
"""
from __future__ import annotations

import numpy as np

SIGN_MODES = ("mixed", "excitatory", "inhibitory")


def wrap(x: np.ndarray, bits: int) -> np.ndarray:
    """Two's-complement wrap of integers into `bits` signed bits (register overflow)."""
    half = np.int64(1) << (bits - 1)
    return ((x + half) & ((half << 1) - 1)) - half


def trunc_decay(x: np.ndarray, keep: int, shift: int = 12) -> np.ndarray:
    """x * keep / 2**shift rounded toward zero: Loihi multiplies the magnitude and shifts
    (sign(p) * (|p| >> 12)), so negative states decay symmetrically."""
    p = x * keep
    return np.sign(p) * (np.abs(p) >> shift)


def wrap_once(x: np.ndarray, half: int) -> np.ndarray:
    """Lava's 24-bit current wrap: one correction of 2**24 (u > 2**23 or u <= -2**23)."""
    y = np.where(x > half, x - 2 * half, x)
    return np.where(y <= -half, x + 2 * half, y)


def prepare_weights(w: np.ndarray, sign_mode: str, num_weight_bits: int,
                    max_bits: int = 8) -> np.ndarray:
    """Lava/Loihi weight preparation: clip to 8 bits for the sign mode, then drop
    `max_bits - num_weight_bits + mixed` LSBs (arithmetic shift, i.e. floor)."""
    if sign_mode not in SIGN_MODES:
        raise ValueError(f"sign mode '{sign_mode}' not in {SIGN_MODES}")
    w = np.asarray(w).astype(np.int64)  # Lava: astype(int32) truncates floats toward zero
    mixed = int(sign_mode == "mixed")
    if sign_mode == "inhibitory":
        w = -w
    w = np.clip(w, -(2 ** max_bits) * mixed, 2 ** max_bits - 1)
    nt = max_bits - num_weight_bits + mixed
    w = (w >> nt) << nt
    if sign_mode == "inhibitory":
        w = -w
    return w


def shift_exp(acc: np.ndarray, exp: int) -> np.ndarray:
    """Apply a weight exponent to an accumulated sum: << exp, or >> -exp (floor)."""
    return acc << exp if exp > 0 else acc >> -exp
