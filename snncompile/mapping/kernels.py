"""numba kernel of the mapper: the dense split's greedy cut over a large sparse layer.

`split._split_dense` cuts a dense-fed layer with zeros into contiguous neuron ranges, each
the longest that fits from its start (every resource grows with the range). Its numpy
search (`_last_fit`, or a bisection over running counts) costs about 20 numpy calls per
block: at 1M neurons with 100 inputs each, ~2000 blocks per split, and the latency
objective's bisection splits the network several times. `greedy_cuts` is the same search
as one pass over the layer's connectivity mask: it adds rows to the current block one at a
time, keeping each input's synapse count, the block's fan-in and its synapse bits (the
same `axon_bits` table), and cuts before the first row that would break a limit. The
blocks, and each block's usage, are those of the numpy search (tests/test_mapping_kernel.py
compares them on random layers); `split.MAP_KERNEL_ELEMENTS` decides which layers use it.
"""
from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True, nogil=True)
def greedy_cuts(rows, lims, out_cum, table, syn_cum, max_syn, syn_cap, bias_axon, state):
    """Cuts and usages of the longest-first split of the mask `rows` (n_out, n_in) uint8.

    lims: (neurons, input axons, output axons, synapse bits) limits; out_cum: running
    output axons (n_out + 1); table[c]: synapse bits of an input with c synapses into the
    block (table[0] = 0, len > neurons limit); syn_cum: running synapse counts; max_syn /
    syn_cap: most synapses per block (work cap / synapse memory at the fewest bits per
    synapse), -1 for none; bias_axon: 1 when a bias axon reaches every neuron of a block;
    state: neuron state bits per neuron.

    Returns (cuts (n_blocks + 1,), usages (n_blocks, 4)): a block that fits with one row
    is kept at one row (its usage above a limit), as the numpy search does."""
    n, n_in = rows.shape
    counts = np.zeros(n_in, np.int64)
    touched = np.empty(n_in, np.int64)
    cuts = np.empty(n + 1, np.int64)
    usage = np.empty((max(n, 1), 4), np.int64)
    cuts[0] = 0
    nb = 0
    a = 0
    while a < n:
        nt = 0
        fanin = 0
        tab = 0
        b = a + 1                      # the end kept when not even one row fits
        u0 = u1 = u2 = u3 = 0
        first = True
        r = a
        while r < n:
            k = r + 1 - a
            if k > lims[0] or k >= table.shape[0]:   # (the table covers the neuron limit)
                break
            for j in range(n_in):
                if rows[r, j]:
                    c = counts[j]
                    if c == 0:
                        touched[nt] = j
                        nt += 1
                        fanin += 1
                    tab += table[c + 1] - table[c]
                    counts[j] = c + 1
            e = r + 1
            s = syn_cum[e] - syn_cum[a]
            v0 = k
            v1 = fanin + bias_axon
            v2 = out_cum[e] - out_cum[a]
            v3 = tab + bias_axon * table[k] + state * k
            ok = v0 <= lims[0] and v1 <= lims[1] and v2 <= lims[2] and v3 <= lims[3]
            if max_syn >= 0 and s > max_syn:
                ok = False
            if syn_cap >= 0 and s > syn_cap:
                ok = False
            if first or ok:
                u0, u1, u2, u3 = v0, v1, v2, v3
            first = False
            if not ok:
                break
            b = e
            r += 1
        for i in range(nt):
            counts[touched[i]] = 0
        usage[nb, 0] = u0
        usage[nb, 1] = u1
        usage[nb, 2] = u2
        usage[nb, 3] = u3
        nb += 1
        cuts[nb] = b
        a = b
    return cuts[:nb + 1], usage[:nb]
