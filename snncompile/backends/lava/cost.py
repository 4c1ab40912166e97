"""Lava's wall time, estimated: how long Loihi2SimCfg fixed_pt on the CPU takes per sample
(verify sizes its default Lava sample count with it, and a Lava run's stall limit grows
with it, session.py).

The model was fitted on this project's measurements (issue 13, a 2-core machine): per time
step, seconds per conv synapse (Lava's conv runs a full convolution per step), per dense
synapse (one matrix-vector product), per neuron, per co-processor partition (host-side
Python), plus a fixed setup per run.
"""
from __future__ import annotations

import numpy as np

from snncompile.ir import FxCoproc

LAVA_S_PER_CONV_SYNAPSE = 3e-8     # gesture-sized TCSA net: ~11 s/sample at T = 12
LAVA_S_PER_DENSE_SYNAPSE = 1.5e-10  # 784-2048-2048-1024: ~0.12 s/sample at T = 100
LAVA_S_PER_NEURON = 2e-8
LAVA_S_PER_COPROC = 5e-3
LAVA_SETUP_S = 5.0


def lava_seconds_per_sample(graph, steps: int) -> float:
    """Estimated Lava wall time of one sample of `steps` steps (the cost model above)."""
    conv = dense = neurons = coproc = 0
    for node in graph.nodes():
        if node.is_synapse:   # outputs x fan-in (a dense layer: its weight count)
            w = np.shape(node.weight)
            synapses = int(np.prod(graph.shape(node.name))) * int(np.prod(w[1:]))
            if len(w) > 2:    # a convolution's kernel (out, in, kh, kw)
                conv += synapses
            else:
                dense += synapses
        elif node.is_neuron:
            neurons += int(np.prod(graph.shape(node.name)))
        elif isinstance(node, FxCoproc):   # a partition (not its output ports)
            coproc += 1
    return steps * (conv * LAVA_S_PER_CONV_SYNAPSE + dense * LAVA_S_PER_DENSE_SYNAPSE
                    + neurons * LAVA_S_PER_NEURON + coproc * LAVA_S_PER_COPROC)
