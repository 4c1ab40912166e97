"""Hypothesis strategies: random small fixed-point networks (dense and conv) with
representable weights, random decays, thresholds, biases and exponents."""
import numpy as np
from hypothesis import strategies as st

from snncompile.ir import Flatten, FxConv2d, FxDense, FxLIF, Graph, Input, Output


def _weights(rng, shape, mode):
    if mode == "mixed":
        return (rng.integers(-128, 128, shape) * 2).astype(np.int32)
    w = rng.integers(0, 256, shape).astype(np.int32)
    return w if mode == "excitatory" else -w


def _lif(rng, name, shape, scale):
    return FxLIF(name, shape=shape, du=int(rng.integers(0, 4096)),
                 dv=int(rng.choice([0, int(rng.integers(0, 4096))])),
                 vth=int(max(1, rng.integers(1, 40) * scale)),
                 bias_mant=rng.integers(-60, 60, shape).astype(np.int32) * (rng.random() < .5),
                 bias_exp=int(rng.integers(0, 4)))


@st.composite
def fixed_networks(draw, conv=None, max_layers=3, delays=False):
    seed = draw(st.integers(0, 2**32 - 1))
    use_conv = draw(st.booleans()) if conv is None else conv
    n_layers = draw(st.integers(1, max_layers))
    graded = draw(st.booleans())
    rng = np.random.default_rng(seed)
    bits = int(rng.integers(2, 6)) if graded else 1
    enc = "graded" if graded else "spikes"
    nodes = []
    if use_conv:
        c, h = int(rng.integers(1, 3)), int(rng.integers(4, 7))
        nodes.append(Input("in", shape=(c, h, h), encoding=enc, bits=bits))
        k = int(rng.integers(1, 4))
        s, p = int(rng.integers(1, 3)), int(rng.integers(0, 2))
        groups = c if (c > 1 and rng.random() < 0.5) else 1
        o = groups * int(rng.integers(1, 3))
        w = _weights(rng, (o, c // groups, k, k), "mixed")
        nodes.append(FxConv2d("conv0", weight=w, stride=(s, s), padding=(p, p), groups=groups,
                              num_message_bits=bits if graded else 0))
        oh = (h + 2 * p - k) // s + 1
        nodes.append(_lif(rng, "lif0", (o, oh, oh), 64 * bits))
        nodes.append(Flatten("flat"))
        n_in = o * oh * oh
        first_graded = False
    else:
        n_in = int(rng.integers(2, 24))
        nodes.append(Input("in", shape=(n_in,), encoding=enc, bits=bits))
        first_graded = graded
    for i in range(1, n_layers + 1):
        n_out = int(rng.integers(1, 16))
        mode = rng.choice(["mixed", "excitatory", "inhibitory"], p=[.7, .2, .1])
        exp = int(rng.integers(-2, 4))
        delay = rng.integers(0, 5, (n_out, n_in)) if delays else None
        nodes.append(FxDense(f"fc{i}", weight=_weights(rng, (n_out, n_in), mode),
                             weight_exp=exp, sign_mode=str(mode),
                             num_message_bits=bits if (first_graded and i == 1) else 0,
                             delay=delay))
        nodes.append(_lif(rng, f"lif{i}", (n_out,), 2 ** max(exp, 0) * 32))
        n_in = n_out
    nodes.append(Output("out"))
    graph = Graph.sequential(nodes)
    n, t = draw(st.integers(1, 4)), draw(st.integers(1, 12))
    shape = graph.input_node().shape
    x = rng.integers(0, 2 ** bits, (n, t) + shape) if graded else (
        rng.random((n, t) + shape) < rng.uniform(0.1, 0.6)).astype(np.int64)
    return graph, x
