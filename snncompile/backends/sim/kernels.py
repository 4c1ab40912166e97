"""numba kernels of the bit-accurate simulator: one sample, one node, all time steps.

Each kernel is the compiled twin of a numpy operation in `simulator.py` (same registers,
same wraps and clips, same counters) and is compared against it in tests/test_sim_kernel.py.
Time is the simulator's global step; a series is a 2-D array (rows = steps, columns =
flattened neurons), rows outside it are zero. A synapse reading row r of its input writes
row r + 1 (+ delay) of its output view, which the caller offsets accordingly.

Synapse kernels are event-driven: only non-zero inputs are visited, and for each the
weight row (int8/int16 mantissas, inputs-major) is added into an int32 or int64
accumulator, which the compiler vectorises. `cache=True` keeps the machine code next to
this file (first call in a fresh checkout compiles, about a second or two per kernel and
dtype combination; later processes load it in milliseconds); `nogil=True` lets the
simulator run samples on several threads.
"""
from __future__ import annotations

import numpy as np
from numba import njit

_OPT = dict(cache=True, nogil=True)

I32_HALF = np.int64(1) << 31
I32_MASK = (np.int64(1) << 32) - 1


@njit(inline="always")
def _wrap32(x):
    return ((x + I32_HALF) & I32_MASK) - I32_HALF


@njit(inline="always")
def _wrap32_flag(x):
    """x in a 32-bit register, and 1 when that wrapped it (counted as int32_wrap)."""
    y = _wrap32(x)
    return y, np.int64(y != x)


@njit(inline="always")
def _shift(a, exp):
    if exp > 0:
        return a << exp
    return a >> (-exp)


@njit(inline="always")
def _decay(x, keep, shift):
    p = x * keep
    if p >= 0:
        return p >> shift
    return -((-p) >> shift)


# ------------------------------------------------------------------------ synapses
@njit(inline="always")
def _active(xr, idx):
    """Indices of the non-zero entries of row xr into idx; returns how many."""
    k = 0
    for i in range(xr.shape[0]):
        if xr[i] != 0:
            idx[k] = i
            k += 1
    return k


@njit(inline="always")
def _events(x, count, in_counts):
    """The non-zero entries of x (R, n) row by row: (idx int32, ptr (R + 1,) int64), the
    entries of row r at idx[ptr[r]:ptr[r + 1]]; counted into in_counts when `count`."""
    rows, n = x.shape
    total = 0
    for r in range(rows):
        for i in range(n):
            total += x[r, i] != 0
    idx = np.empty(total, np.int32)
    ptr = np.empty(rows + 1, np.int64)
    k = 0
    for r in range(rows):
        ptr[r] = k
        for i in range(n):
            if x[r, i] != 0:
                idx[k] = i
                k += 1
    ptr[rows] = k
    if count:
        for q in range(k):
            in_counts[idx[q]] += 1
    return idx, ptr


@njit(inline="always")
def _block(n_in, m):
    """Output columns per block: the block's weights (n_in x block int8) stay in the
    core's L2 (about 1 MB of 2) for all steps of a sample, instead of every step's rows
    coming from L3 (shared with every other process) or memory."""
    b = ((1 << 20) // max(n_in, 1)) & ~63
    return max(64, min(b, m))


@njit(inline="always")
def _row_sum(wt, idx, q0, q1, chunk, a, j0, j1):
    """a[:j1 - j0] = sum of the weight rows wt[idx[q], j0:j1], q0 <= q < q1.

    int8 weights (`chunk` > 0): up to `chunk` rows (32767 // max|mantissa|, so that the
    sum fits) are summed into an int16 accumulator, eight rows at a time, then widened into
    a: the compiler keeps 32 lanes per AVX-512 register (int16) instead of 16 (int32),
    twice the adds per instruction. Numba computes the expression in int64; storing it
    into int16 lets LLVM narrow every add to 16 bits, exact modulo 2**16, and the chunk's
    true sum is within int16. Wider weights (`chunk` 0) go four rows at a time into a."""
    m = j1 - j0
    a[:m] = 0
    q = q0
    if chunk > 0:
        b = np.empty(m, np.int16)
        while q < q1:
            qe = min(q + chunk, q1)
            b[:] = 0
            while q + 8 <= qe:
                r0, r1 = wt[idx[q], j0:j1], wt[idx[q + 1], j0:j1]
                r2, r3 = wt[idx[q + 2], j0:j1], wt[idx[q + 3], j0:j1]
                r4, r5 = wt[idx[q + 4], j0:j1], wt[idx[q + 5], j0:j1]
                r6, r7 = wt[idx[q + 6], j0:j1], wt[idx[q + 7], j0:j1]
                for j in range(m):
                    b[j] += (((r0[j] + r1[j]) + (r2[j] + r3[j]))
                             + ((r4[j] + r5[j]) + (r6[j] + r7[j])))
                q += 8
            while q < qe:
                r0 = wt[idx[q], j0:j1]
                for j in range(m):
                    b[j] += r0[j]
                q += 1
            for j in range(m):
                a[j] += b[j]
        return
    while q + 4 <= q1:
        r0, r1 = wt[idx[q], j0:j1], wt[idx[q + 1], j0:j1]
        r2, r3 = wt[idx[q + 2], j0:j1], wt[idx[q + 3], j0:j1]
        for j in range(m):
            a[j] += ((np.int32(r0[j]) + np.int32(r1[j]))
                     + (np.int32(r2[j]) + np.int32(r3[j])))
        q += 4
    while q < q1:
        r0 = wt[idx[q], j0:j1]
        for j in range(m):
            a[j] += r0[j]
        q += 1


@njit(**_OPT)
def dense_binary(x, wt, chunk, acc, nt, exp, out, in_counts, j0, j1, count):
    """Binary spikes through dense synapses (Lava: sum of the active inputs' columns).

    x (R, n_in) any int, non-zero = spike; wt (n_in, n_out) int8/int16 mantissas
    (w >> nt); chunk: for int8 mantissas 32767 // max|mantissa| (rows summed in int16,
    `_row_sum`), 0 otherwise; acc (n_out,) int32 or int64 scratch, wide enough for
    fan_in * max|w >> nt|;
    out (>= R + 1, n_out) int64 zeros: out[r + 1] = (sum << nt) << exp (or >> -exp).
    Only outputs j0 <= j < j1 are computed (two threads can share a sample), and input
    events are counted into in_counts when `count`. The outputs are computed in blocks
    of columns (`_block`), each over all rows."""
    rows, n_in = x.shape
    idx, ptr = _events(x, count, in_counts)
    rows = min(rows, out.shape[0] - 1)
    bw = _block(n_in, j1 - j0)
    for b0 in range(j0, j1, bw):
        b1 = min(b0 + bw, j1)
        m = b1 - b0
        for r in range(rows):
            if ptr[r + 1] == ptr[r]:
                continue
            _row_sum(wt, idx, ptr[r], ptr[r + 1], chunk, acc, b0, b1)
            o = out[r + 1, b0:b1]
            for j in range(m):
                o[j] = _shift(np.int64(acc[j]) << nt, exp)


@njit(**_OPT)
def dense_lif(x, off, wt, chunk, acc, nt, exp, sbias, in_counts, start, keep_u, keep_v,
              shift, half, act_shift, vth, fire_ge, reset, bias, spikes, u_rec, v_rec,
              record, counts):
    """`dense_binary` into `lif` in one pass, for a LIF whose only input is a dense layer
    that feeds nothing else: the same integers without the synapse's (steps, n_out)
    int64 series in memory. Each neuron depends only on its own input column, so the
    neurons run in blocks of columns (`_block`), each block over all steps with its
    weights in L2.

    x (R, n_in) the dense's input, its row 0 at global step `off`; the dense's series
    (row r lands at global step off + r + 1, plus the bias axon `sbias` (n_out,) int64 at
    every global step < off + R + 1, zero after, exactly as the unfused series) is read by
    the LIF at global steps start .. start + T - 1; spikes (T, n_out). Other arguments as
    in `dense_binary` and `lif`."""
    rows, n_in = x.shape
    steps, n = spikes.shape
    idx, ptr = _events(x, True, in_counts)
    at = np.zeros(n, np.int64)
    u = np.zeros(n, np.int64)
    v = np.zeros(n, np.int64)
    end = off + rows + 1                # the dense's series covers global steps [0, end)
    bw = _block(n_in, n)
    for b0 in range(0, n, bw):
        b1 = min(b0 + bw, n)
        m = b1 - b0
        ab = at[:m]
        sb = sbias[b0:b1]
        for t in range(steps):
            g = start + t
            r = g - 1 - off
            if g >= end:
                ab[:] = 0
            elif r < 0 or r >= rows or ptr[r + 1] == ptr[r]:
                ab[:] = sb
            else:
                _row_sum(wt, idx, ptr[r], ptr[r + 1], chunk, acc, b0, b1)
                for j in range(m):
                    ab[j] = _shift(np.int64(acc[j]) << nt, exp) + sb[j]
            _lif_step(ab, u[b0:b1], v[b0:b1], keep_u[b0:b1], keep_v[b0:b1], shift, half,
                      act_shift, vth[b0:b1], fire_ge, reset, bias[b0:b1], spikes[t, b0:b1],
                      counts)
            if record:
                for j in range(m):
                    u_rec[t, b0 + j] = u[b0 + j]
                    v_rec[t, b0 + j] = v[b0 + j]


@njit(nogil=True, cache=True)
def _graded_sum32(idx, k, xv, wt, acc):
    """acc[:] = sum of xv[q] * wt[idx[q]] over q < k, in int32 (the caller checked that the
    sums fit); xv (k,) int32, the active messages. LLVM vectorises this with 16 int32
    lanes when xv is an int32 array (with int64 messages cast to int32 here it stayed
    at the int64 speed, measured)."""
    n = wt.shape[1]
    acc[:] = 0
    q = 0
    while q + 4 <= k:
        i0, i1, i2, i3 = idx[q], idx[q + 1], idx[q + 2], idx[q + 3]
        x0, x1, x2, x3 = xv[q], xv[q + 1], xv[q + 2], xv[q + 3]
        r0, r1, r2, r3 = wt[i0], wt[i1], wt[i2], wt[i3]
        for j in range(n):
            acc[j] = acc[j] + ((x0 * r0[j] + x1 * r1[j]) + (x2 * r2[j] + x3 * r3[j]))
        q += 4
    while q < k:
        x0 = xv[q]
        r0 = wt[idx[q]]
        for j in range(n):
            acc[j] = acc[j] + x0 * r0[j]
        q += 1


@njit(**_OPT)
def dense_graded(x, wt, wmax, nt, exp, out, in_counts, wraps):
    """Graded messages through dense synapses: acc = W @ x, then Lava's int32 dot product
    and shift (wrap 32, shift, wrap 32); `wraps[0]` counts outputs that differ from the
    exact value. wmax: max |wt|.

    A step whose messages satisfy sum |x_i| * wmax < 2**31 (every column's sum, and every
    partial sum, fits int32) accumulates in int32: numba computes the products in int64,
    storing them into int32 lets LLVM narrow them (16 lanes per AVX-512 register instead
    of 8), exact since the true sums fit. Other steps accumulate in int64."""
    rows, n_in = x.shape
    n_out = wt.shape[1]
    acc = np.zeros(n_out, np.int64)
    acc32 = np.zeros(n_out, np.int32)
    xv = np.empty(n_in, np.int32)
    idx = np.empty(n_in, np.int64)
    for r in range(rows):
        xr = x[r]
        k = _active(xr, idx)
        if k == 0:
            continue
        sabs = np.int64(0)
        for q in range(k):
            in_counts[idx[q]] += 1
            sabs += abs(np.int64(xr[idx[q]]))
        narrow = sabs * np.int64(wmax) < (np.int64(1) << 31)
        q = 0
        if narrow:
            for q in range(k):
                xv[q] = xr[idx[q]]
            _graded_sum32(idx, k, xv, wt, acc32)
            for j in range(n_out):
                acc[j] = acc32[j]
        else:
            acc[:] = 0
            while q + 4 <= k:
                i0, i1, i2, i3 = idx[q], idx[q + 1], idx[q + 2], idx[q + 3]
                x0, x1 = np.int64(xr[i0]), np.int64(xr[i1])
                x2, x3 = np.int64(xr[i2]), np.int64(xr[i3])
                r0, r1, r2, r3 = wt[i0], wt[i1], wt[i2], wt[i3]
                for j in range(n_out):
                    acc[j] += (x0 * r0[j] + x1 * r1[j]) + (x2 * r2[j] + x3 * r3[j])
                q += 4
            while q < k:
                i0 = idx[q]
                x0 = np.int64(xr[i0])
                r0 = wt[i0]
                for j in range(n_out):
                    acc[j] += x0 * r0[j]
                q += 1
        if r + 1 < out.shape[0]:
            o = out[r + 1]
            for j in range(n_out):
                a = acc[j] << nt
                exact = _shift(a, exp)
                v = _wrap32(_shift(_wrap32(a), exp))
                if v != exact:
                    wraps[0] += 1
                o[j] = v


@njit(**_OPT)
def dense_delayed(x, wt, dl, n_delays, nt, exp, out, in_counts):
    """Dense synapses with per-synapse delays (Lava DelayDense): the partial sum of the
    synapses with delay k is shifted by the exponent on its own and lands at r + 1 + k.
    dl (n_in, n_out) delay per synapse; out (>= R + 1 + max delay, n_out) int64 zeros."""
    rows, n_in = x.shape
    n_out = wt.shape[1]
    part = np.zeros((n_delays, n_out), np.int64)
    for r in range(rows):
        hit = False
        for i in range(n_in):
            xi = np.int64(x[r, i])
            if xi != 0:
                if not hit:
                    part[:] = 0
                    hit = True
                in_counts[i] += 1
                row = wt[i]
                drow = dl[i]
                for j in range(n_out):
                    part[drow[j], j] += xi * row[j]
        if hit:
            for k in range(n_delays):
                if r + 1 + k < out.shape[0]:
                    o = out[r + 1 + k]
                    for j in range(n_out):
                        o[j] += _shift(part[k, j] << nt, exp)


@njit(**_OPT)
def conv(x, w2, shape_in, shape_out, geom, out, in_counts, wraps):
    """Lava Conv (cross-correlation, OIHW weights, groups, stride, padding), wrapped to 24
    bits; no exponent, no weight truncation. Event-driven: every non-zero input scatters
    its kernel into the outputs it reaches.

    x (R, C*H*W); w2 (ig, kh, kw, O) weights; shape_in (C, H, W); shape_out (O, OH, OW);
    geom (ig, og, sh, sw, ph, pw); out (>= R + 1, O*OH*OW) int64 zeros."""
    rows = x.shape[0]
    c_in, h, wd = shape_in[0], shape_in[1], shape_in[2]
    o_n, oh, ow = shape_out[0], shape_out[1], shape_out[2]
    ig, og, sh, sw, ph, pw = geom[0], geom[1], geom[2], geom[3], geom[4], geom[5]
    kh, kw = w2.shape[1], w2.shape[2]
    acc = np.zeros(oh * ow * o_n, np.int64)   # (OH, OW, O): contiguous over channels
    half = np.int64(1) << 23
    mask = (np.int64(1) << 24) - 1
    for r in range(rows):
        hit = False
        for c in range(c_in):
            g = c // ig
            cl = c - g * ig
            o0 = g * og
            for iy in range(h):
                for ix in range(wd):
                    v = np.int64(x[r, (c * h + iy) * wd + ix])
                    if v == 0:
                        continue
                    if not hit:
                        acc[:] = 0
                        hit = True
                    in_counts[(c * h + iy) * wd + ix] += 1
                    for ky in range(kh):
                        ty = iy + ph - ky
                        if ty < 0 or ty % sh != 0:
                            continue
                        oy = ty // sh
                        if oy >= oh:
                            continue
                        for kx in range(kw):
                            tx = ix + pw - kx
                            if tx < 0 or tx % sw != 0:
                                continue
                            ox = tx // sw
                            if ox >= ow:
                                continue
                            base = (oy * ow + ox) * o_n + o0
                            wr = w2[cl, ky, kx]
                            for o in range(og):
                                acc[base + o] += v * wr[o0 + o]
        if hit and r + 1 < out.shape[0]:
            dst = out[r + 1]
            for p in range(oh * ow):
                for o in range(o_n):
                    y = acc[p * o_n + o]
                    yw = ((y + half) & mask) - half
                    if yw != y:
                        wraps[0] += 1
                    dst[o * oh * ow + p] = yw


# ------------------------------------------------------------------------ neurons
@njit(inline="always")
def _lif_step(at, u, v, keep_u, keep_v, shift, half, act_shift, vth, fire_ge, reset, bias,
              st, counts):
    """One step of Lava PyLifModelBitAcc for every neuron: input current at (n,) int64,
    state u, v (n,) int64 updated in place, spikes into st (n,) uint8; counts:
    [int32_wrap, u_wrap, v_clip, spikes, active] (added to)."""
    n = at.shape[0]
    lo, hi = -half + 1, half - 1
    c_i32 = 0
    c_u = 0
    c_v = 0
    c_s = 0
    c_a = 0
    for j in range(n):
        ain = at[j]
        c_a += ain != 0
        a32, w0 = _wrap32_flag(ain)
        a6w, w1 = _wrap32_flag(a32 << act_shift)
        cur32, w2 = _wrap32_flag(_decay(u[j], keep_u[j], shift) + a6w)
        c_i32 += w0 + w1 + w2
        un = cur32
        if cur32 > half:
            un = cur32 - 2 * half
        elif cur32 <= -half:
            un = cur32 + 2 * half
        c_u += un != cur32
        vv = _decay(v[j], keep_v[j], shift) + un + bias[j]
        vc = min(max(vv, lo), hi)
        c_v += vc != vv
        th = vth[j]
        s = vc >= th if fire_ge else vc > th
        c_s += s
        st[j] = s
        u[j] = un
        if not s:
            v[j] = vc
        elif reset == 1:
            v[j] = vc - th
        else:
            v[j] = th if reset == 2 else 0
    counts[0] += c_i32
    counts[1] += c_u
    counts[2] += c_v
    counts[3] += c_s
    counts[4] += c_a


@njit(**_OPT)
def lif(a, keep_u, keep_v, shift, half, act_shift, vth, fire_ge, reset, bias, spikes, u_rec,
        v_rec, record, counts):
    """Lava PyLifModelBitAcc for T steps from zero state (fire_ge: spike at v >= vth, not
    v > vth; reset after a spike: 0 v = 0, 1 v -= vth, 2 v = vth, the index in ir.nodes.RESETS).
    keep_u, keep_v, vth (n,) int64: per neuron (a layer's one value repeated);
    a (T, n) int64 input current;
    spikes (T, n) uint8 out; u_rec/v_rec (T, n) int32 when `record`.
    counts: [int32_wrap, u_wrap, v_clip, spikes, active] (added to)."""
    steps, n = a.shape
    u = np.zeros(n, np.int64)
    v = np.zeros(n, np.int64)
    for t in range(steps):
        _lif_step(a[t], u, v, keep_u, keep_v, shift, half, act_shift, vth, fire_ge, reset,
                  bias, spikes[t], counts)
        if record:
            for j in range(n):
                u_rec[t, j] = u[j]
                v_rec[t, j] = v[j]


@njit(**_OPT)
def lif_rec(a, wr, chunk, acc, nt, exp, rec_counts, keep_u, keep_v, shift, half, act_shift,
            vth, fire_ge, reset, bias, spikes, u_rec, v_rec, record, counts):
    """`lif` with recurrent binary dense synapses (FxRecDense) from the layer's own spikes:
    at local step t the input is a[t] plus the dense sum of the spikes of step t - 1
    (nothing at t = 0), wr (n, n) input-major mantissas as in `dense_binary`; the spikes
    of every step are counted into rec_counts (the recurrent synapse's input events)."""
    steps, n = a.shape
    u = np.zeros(n, np.int64)
    v = np.zeros(n, np.int64)
    at = np.empty(n, np.int64)
    idx = np.empty(n, np.int32)
    k = 0
    for t in range(steps):
        if k == 0:
            at[:] = a[t]
        else:
            _row_sum(wr, idx, 0, k, chunk, acc, 0, n)
            for j in range(n):
                at[j] = a[t, j] + _shift(np.int64(acc[j]) << nt, exp)
        st = spikes[t]
        _lif_step(at, u, v, keep_u, keep_v, shift, half, act_shift, vth, fire_ge, reset,
                  bias, st, counts)
        if record:
            for j in range(n):
                u_rec[t, j] = u[j]
                v_rec[t, j] = v[j]
        k = 0
        for j in range(n):
            if st[j] != 0:
                idx[k] = j
                k += 1
                rec_counts[j] += 1


@njit(**_OPT)
def sigma_delta(a, role, up, state_exp, vth, bias, cum_error, msg_max, out, counts):
    """Lava's fixed_pt sigma-delta models from zero state over all global steps, int32
    registers explicit. role 0 sigma_delta, 1 delta, 2 sigma. a (N, n) int64 input;
    out (N, n) int64 graded spikes. counts: [int32_wrap, message_bits, spikes, active]."""
    steps, n = a.shape
    sigma = np.zeros(n, np.int64)
    act_p = np.zeros(n, np.int64)
    residue = np.zeros(n, np.int64)
    error = np.zeros(n, np.int64)
    c_w = 0
    c_m = 0
    c_s = 0
    c_a = 0
    for t in range(steps):
        at = a[t]
        ot = out[t]
        for j in range(n):
            y, w = _wrap32_flag(at[j])
            c_a += y != 0
            if role == 2:
                sigma[j], w1 = _wrap32_flag(sigma[j] + y)
                w += w1
                o = sigma[j]
            else:
                if role == 1:
                    act, w1 = _wrap32_flag(y << up)
                else:
                    sigma[j], w1 = _wrap32_flag(sigma[j] + y)
                    act, w2 = _wrap32_flag(sigma[j] + bias[j])
                    w1 += w2
                    act = max(act, 0)
                d1, w2 = _wrap32_flag(act - act_p[j])
                delta, w3 = _wrap32_flag(d1 + residue[j])
                w += w1 + w2 + w3
                if cum_error:
                    e, w1 = _wrap32_flag(error[j] + delta)
                    w += w1
                    s = delta if abs(e) >= vth else 0
                    error[j] = 0 if s != 0 else e
                else:
                    s = delta if abs(delta) >= vth else 0
                residue[j], w1 = _wrap32_flag(delta - s)
                w += w1
                act_p[j] = act
                o = s >> state_exp
                c_m += abs(o) >= msg_max
            c_w += w
            c_s += o != 0
            ot[j] = o
    counts[0] += c_w
    counts[1] += c_m
    counts[2] += c_s
    counts[3] += c_a


# ------------------------------------------------------------------------ gates
@njit(**_OPT)
def gate(a, g, idx, shift, nearest, relu, gmax, live, out):
    """FxGate over all steps (`simulator._Gate.step`): out[t, j] = (wrap32(a[t, j]) *
    g[t, idx[j]]) / 2**shift, floor or to nearest with ties to even (`coproc.ops.
    shift_round`), then ReLU if asked; idx maps each neuron to its gain (broadcast and
    upsampled). A step that is not `live` (the source gave nothing) is zero. Returns the
    number of live gains outside [0, gmax] (an error in strict mode)."""
    steps, n = a.shape
    bad = 0
    rnd = (np.int64(1) << (shift - 1)) - 1 if shift > 0 else np.int64(0)
    for t in range(steps):
        if not live[t]:
            for j in range(n):
                out[t, j] = 0
            continue
        for k in range(g.shape[1]):
            if g[t, k] < 0 or g[t, k] > gmax:
                bad += 1
        for j in range(n):
            p = _wrap32(a[t, j]) * g[t, idx[j]]
            if shift > 0:
                if nearest:
                    p = (p + rnd + ((p >> shift) & 1)) >> shift
                else:
                    p = p >> shift
            if relu and p < 0:
                p = 0
            out[t, j] = p
    return bad


@njit(**_OPT)
def count_nonzero_rows(x, nz):
    """nz[i] += number of non-zero x[:, i] (input events of a synapse computed by BLAS)."""
    for r in range(x.shape[0]):
        for i in range(x.shape[1]):
            if x[r, i] != 0:
                nz[i] += 1


@njit(**_OPT)
def transpose_cast(w, nt, out):
    """out[i, j] = w[j, i] >> nt: weights (out, in) to input-major mantissas, one pass."""
    n_out, n_in = w.shape
    for j in range(n_out):
        for i in range(n_in):
            out[i, j] = w[j, i] >> nt


@njit(**_OPT)
def prepare_transpose(w, lo, hi, nt, negate, mant, fanout):
    """Lava's weight preparation (`fixed.prepare_weights`: clip to [lo, hi] for the sign
    mode, drop nt LSBs; inhibitory weights negated around it) fused with the transpose to
    input-major mantissas and the fan-out count, in one tiled pass: mant[i, j] =
    prepared(w[j, i]) >> nt, fanout[i] = non-zero prepared weights of input i. Returns how
    many weights the preparation changed (not representable as given)."""
    n_out, n_in = w.shape
    changed = 0
    tile = 64
    for j0 in range(0, n_out, tile):
        j1 = min(j0 + tile, n_out)
        for i0 in range(0, n_in, tile):
            i1 = min(i0 + tile, n_in)
            for j in range(j0, j1):
                for i in range(i0, i1):
                    w0 = np.int64(w[j, i])
                    v = -w0 if negate else w0
                    v = min(max(v, lo), hi)
                    v = (v >> nt) << nt
                    if negate:
                        v = -v
                    changed += v != w0
                    mant[i, j] = v >> nt
                    fanout[i] += v != 0
    return changed
