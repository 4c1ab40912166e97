"""Hypothesis strategies: random small fixed-point networks (dense and conv) with
representable weights, random decays, thresholds, biases and exponents."""
import numpy as np
from hypothesis import strategies as st

from snncompile.ir import (Flatten, FxConv1d, FxConv2d, FxDense, FxLIF, FxRecDense,
                           FxSigmaDelta, Graph, Input, Output)


def _weights(rng, shape, mode):
    if mode == "mixed":
        return (rng.integers(-128, 128, shape) * 2).astype(np.int32)
    w = rng.integers(0, 256, shape).astype(np.int32)
    return w if mode == "excitatory" else -w


def _lif(rng, name, shape, scale, options=None, per=None):
    """A random FxLIF; `options` (a numpy Generator) also draws reset and fire_at, `per`
    (another) per-channel or per-neuron du, dv and vth."""
    lif = FxLIF(name, shape=shape, du=int(rng.integers(0, 4096)),
                dv=int(rng.choice([0, int(rng.integers(0, 4096))])),
                vth=int(max(1, rng.integers(1, 40) * scale)),
                bias_mant=rng.integers(-60, 60, shape).astype(np.int32) * (rng.random() < .5),
                bias_exp=int(rng.integers(0, 4)))
    if options is not None:
        lif.reset = str(options.choice(["zero", "subtract"] + ["threshold"] * (per is not None)))
        lif.fire_at = str(options.choice([">", ">="]))
    if per is not None:
        _per_neuron(per, lif, scale)
    return lif


def _bias_axon(rng, syn, scale):
    """Give synapse `syn` a random bias axon (8-bit mantissas of a random sign mode, the
    exponent that makes them about `scale` integer units at most), or none one time in
    five."""
    if rng.random() < 0.2:
        return
    mode = str(rng.choice(["mixed", "excitatory", "inhibitory"]))
    m = _weights(rng, (syn.weight.shape[0],), mode) * (rng.random(syn.weight.shape[0]) < .8)
    syn.bias_exp = int(np.clip(round(np.log2(max(scale, 1) / 128)), 0, 7))
    syn.bias_mant = m.astype(np.int32) if m.any() else None


def _per_neuron(rng, lif, scale):
    """Per-channel ((C, 1, 1) of a conv layer) or per-neuron du, dv and vth, each drawn or
    left a scalar."""
    shape = lif.shape
    per = (shape[0],) + (1,) * (len(shape) - 1) if rng.random() < .5 else shape
    if rng.random() < .7:
        lif.du = rng.integers(0, 4096, per)
    if rng.random() < .7:
        lif.dv = rng.integers(0, 4096, per) * (rng.random(per) < .7)
    if rng.random() < .8:
        lif.vth = np.maximum(1, rng.integers(1, 40, per) * scale).astype(np.int64)
    lif.__post_init__()     # validates and normalises the arrays, as a constructor does


@st.composite
def fixed_networks(draw, conv=None, max_layers=3, delays=False, neuron_options=False,
                   synapse_bias=False, per_neuron=False):
    """neuron_options: every FxLIF draws its reset ("zero"/"subtract", and "threshold" with
    per_neuron) and fire_at (">"/">=") from a second generator; synapse_bias: every synapse
    may get a bias axon (`_bias_axon`, a third generator); per_neuron: every FxLIF's du, dv
    and vth per channel or per neuron from a fourth (the other draws are those without
    them)."""
    seed = draw(st.integers(0, 2**32 - 1))
    opts = np.random.default_rng(seed + 1) if neuron_options else None
    brng = np.random.default_rng(seed + 2) if synapse_bias else None
    per = np.random.default_rng(seed + 3) if per_neuron else None
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
        nodes.append(_lif(rng, "lif0", (o, oh, oh), 64 * bits, opts, per))
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
        nodes.append(_lif(rng, f"lif{i}", (n_out,), 2 ** max(exp, 0) * 32, opts, per))
        n_in = n_out
    nodes.append(Output("out"))
    for node, nxt in zip(nodes, nodes[1:]):
        if brng is not None and node.is_synapse:   # about a threshold's worth per step
            _bias_axon(brng, node, int(np.max(nxt.vth)) * int(brng.integers(1, 5)) // 2)
    graph = Graph.sequential(nodes)
    n, t = draw(st.integers(1, 4)), draw(st.integers(1, 12))
    shape = graph.input_node().shape
    x = rng.integers(0, 2 ** bits, (n, t) + shape) if graded else (
        rng.random((n, t) + shape) < rng.uniform(0.1, 0.6)).astype(np.int64)
    return graph, x


@st.composite
def conv1d_networks(draw, max_convs=2, max_len=12, synapse_bias=False):
    """Random Conv1d chains: Input (C, L) -> FxConv1d -> FxLIF (-> FxConv1d -> FxLIF) ->
    Flatten -> FxDense -> FxLIF, with random channels, lengths, kernels, strides,
    paddings and groups, binary or graded input (graded into the first conv);
    synapse_bias: each synapse may get a bias axon (`_bias_axon`, a second generator)."""
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    brng = np.random.default_rng(seed + 2) if synapse_bias else None
    graded = draw(st.booleans())
    bits = int(rng.integers(2, 6)) if graded else 1
    c, length = int(rng.integers(1, 4)), int(rng.integers(3, max_len + 1))
    nodes = [Input("in", shape=(c, length), encoding="graded" if graded else "spikes",
                   bits=bits)]
    for i in range(draw(st.integers(1, max_convs))):
        k = int(rng.integers(1, min(length, 5) + 1))
        s, p = int(rng.integers(1, 3)), int(rng.integers(0, k))
        groups = c if (c > 1 and rng.random() < 0.4) else 1
        o = groups * int(rng.integers(1, 3))
        nodes.append(FxConv1d(f"conv{i}", weight=_weights(rng, (o, c // groups, 1, k), "mixed"),
                              stride=(1, s), padding=(0, p), groups=groups,
                              num_message_bits=bits if graded and i == 0 else 0))
        length = (length + 2 * p - k) // s + 1
        c = o
        nodes.append(_lif(rng, f"lif{i}", (c, length), 64 * (bits if i == 0 else 1)))
        if brng is not None:
            _bias_axon(brng, nodes[-2], int(np.max(nodes[-1].vth)) * int(brng.integers(1, 5)))
    nodes.append(Flatten("flat"))
    n_out = int(rng.integers(1, 8))
    nodes.append(FxDense("fc", weight=_weights(rng, (n_out, c * length), "mixed")))
    nodes.append(_lif(rng, "out_lif", (n_out,), 32))
    if brng is not None:
        _bias_axon(brng, nodes[-2], int(np.max(nodes[-1].vth)) * int(brng.integers(1, 5)))
    nodes.append(Output("out"))
    graph = Graph.sequential(nodes)
    n, t = draw(st.integers(1, 3)), draw(st.integers(1, 10))
    shape = graph.input_node().shape
    x = rng.integers(0, 2 ** bits, (n, t) + shape) if graded else (
        rng.random((n, t) + shape) < rng.uniform(0.2, 0.7)).astype(np.int64)
    return graph, x


@st.composite
def sigma_delta_networks(draw, max_layers=3):
    """Random sigma-delta chains: a delta encoder on graded input (or binary input straight
    into the first synapse), dense or conv synapses with graded messages, ReLU sigma-delta
    layers with random thresholds, biases, exponents and cumulative-error mode, and a sigma
    readout or sigma-delta output layer."""
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    encode = draw(st.booleans())
    use_conv = draw(st.booleans())
    cum = bool(rng.random() < 0.3)

    def sd(name, shape):
        se, ste = int(rng.integers(0, 8)), int(rng.integers(0, 8))
        return FxSigmaDelta(name, shape=shape, vth=int(rng.integers(0, 30)), spike_exp=se,
                            state_exp=ste, cum_error=cum,
                            bias_mant=rng.integers(-20, 20, shape).astype(np.int32)
                            * (rng.random() < .5))

    nodes, bits = [], 16
    shape = (int(rng.integers(1, 3)), 5, 5) if use_conv else (int(rng.integers(2, 20)),)
    if encode:
        nodes.append(Input("in", shape=shape, encoding="graded", bits=8))
        enc = sd("enc", shape)
        enc.role = "delta"
        nodes.append(enc)
    else:
        nodes.append(Input("in", shape=shape))
        bits = 0
    if use_conv:
        o = int(rng.integers(1, 4))
        nodes.append(FxConv2d("conv0", weight=_weights(rng, (o, shape[0], 3, 3), "mixed"),
                              padding=(1, 1), num_message_bits=bits))
        nodes.append(sd("sd0", (o, 5, 5)))
        nodes.append(Flatten("flat"))
        n_in, bits = o * 25, 16
    else:
        n_in = shape[0]
    for i in range(1, draw(st.integers(1, max_layers)) + 1):
        n_out = int(rng.integers(1, 12))
        mode = rng.choice(["mixed", "excitatory", "inhibitory"], p=[.7, .2, .1])
        nodes.append(FxDense(f"fc{i}", weight=_weights(rng, (n_out, n_in), mode),
                             weight_exp=int(rng.integers(-3, 3)), sign_mode=str(mode),
                             num_message_bits=bits))
        nodes.append(sd(f"sd{i}", (n_out,)))
        n_in, bits = n_out, 16
    if rng.random() < 0.5:
        nodes[-1] = FxSigmaDelta(nodes[-1].name, shape=nodes[-1].shape, role="sigma")
    nodes.append(Output("out"))
    graph = Graph.sequential(nodes)
    n, t = draw(st.integers(1, 3)), draw(st.integers(1, 10))
    x = (rng.integers(0, 256, (n, t) + shape) if encode
         else (rng.random((n, t) + shape) < 0.4).astype(np.int64))
    return graph, x


@st.composite
def residual_networks(draw, max_layers=4, delays=False):
    """Random dense LIF chains with skip connections of random depth: each extra edge is a
    dense shortcut synapse from an earlier spike layer (or the input) summed into a later
    LIF's current, so the paths into that LIF differ by up to `max_layers` steps. The
    graph is returned unbalanced (the test runs `ir.timing.balance`)."""
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    n_layers = draw(st.integers(2, max_layers))
    sizes = [int(rng.integers(2, 12)) for _ in range(n_layers + 1)]
    graph = Graph()
    graph.add(Input("in", shape=(sizes[0],)))
    spikes = ["in"]
    for i in range(1, n_layers + 1):
        srcs = [spikes[-1]]
        skips = [s for s in range(len(spikes) - 1) if rng.random() < 0.5]
        srcs += [spikes[s] for s in skips]
        syns = []
        for k, src in enumerate(srcs):
            n_in = graph.shape(src)[0]
            mode = str(rng.choice(["mixed", "excitatory"], p=[.8, .2]))
            delay = rng.integers(0, 3, (sizes[i], n_in)) if delays and k == 0 else None
            syn = FxDense(f"fc{i}" if k == 0 else f"skip{i}_{k}", sign_mode=mode,
                          weight=_weights(rng, (sizes[i], n_in), mode),
                          weight_exp=int(rng.integers(0, 3)), delay=delay)
            graph.add(syn, [src])
            syns.append(syn.name)
        graph.add(_lif(rng, f"lif{i}", (sizes[i],), 64), syns)
        spikes.append(f"lif{i}")
    graph.add(Output("out"), [spikes[-1]])
    n, t = draw(st.integers(1, 3)), draw(st.integers(1, 10))
    x = (rng.random((n, t, sizes[0])) < rng.uniform(0.2, 0.7)).astype(np.int64)
    return graph, x


@st.composite
def recurrent_networks(draw, max_layers=3, neuron_options=False, synapse_bias=False,
                       per_neuron=False):
    """Random dense LIF chains in which some layers (at least one) have recurrent synapses
    (FxRecDense: the layer's spikes back into itself one step later), with random sign
    modes and exponents; `neuron_options` also draws each LIF's reset and fire_at,
    `synapse_bias` a bias axon on each feed-forward synapse, `per_neuron` per-neuron du, dv
    and vth (each from its own generator, as in `fixed_networks`)."""
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    opts = np.random.default_rng(seed + 1) if neuron_options else None
    brng = np.random.default_rng(seed + 2) if synapse_bias else None
    per = np.random.default_rng(seed + 3) if per_neuron else None
    n_layers = draw(st.integers(1, max_layers))
    recurrent = [rng.random() < 0.6 for _ in range(n_layers)]
    recurrent[int(rng.integers(0, n_layers))] = True
    n_in = int(rng.integers(2, 16))
    graph = Graph()
    graph.add(Input("in", shape=(n_in,)))
    prev = "in"
    for i in range(1, n_layers + 1):
        n = int(rng.integers(1, 12))
        mode = str(rng.choice(["mixed", "excitatory", "inhibitory"], p=[.7, .2, .1]))
        exp = int(rng.integers(-1, 3))
        graph.add(FxDense(f"fc{i}", weight=_weights(rng, (n, n_in), mode), weight_exp=exp,
                          sign_mode=mode), [prev])
        syns = [f"fc{i}"]
        if recurrent[i - 1]:
            rmode = str(rng.choice(["mixed", "excitatory", "inhibitory"], p=[.6, .2, .2]))
            graph.add_delay(FxRecDense(f"rec{i}", weight=_weights(rng, (n, n), rmode),
                                       weight_exp=int(rng.integers(-1, 3)), sign_mode=rmode),
                            (n,))
            syns.append(f"rec{i}")
        lif = _lif(rng, f"lif{i}", (n,), 2 ** max(exp, 0) * 32, opts, per)
        if brng is not None:       # about a threshold's worth per step
            _bias_axon(brng, graph.node(f"fc{i}"),
                       int(np.max(lif.vth)) * int(brng.integers(1, 5)) // 2)
        graph.add(lif, syns)
        if recurrent[i - 1]:
            graph.connect(f"lif{i}", f"rec{i}")
        prev, n_in = f"lif{i}", n
    graph.add(Output("out"), [prev])
    n_samples, t = draw(st.integers(1, 4)), draw(st.integers(1, 12))
    x = (rng.random((n_samples, t, graph.input_node().shape[0]))
         < rng.uniform(0.1, 0.7)).astype(np.int64)
    return graph, x


def assert_lava_equals_simulator(case):
    """Lava's spikes equal the simulator's, node for node, on (graph, inputs)."""
    from snncompile.backends.lava.run import run_lava
    from snncompile.backends.sim import Simulator
    graph, x = case
    sim = Simulator(graph).run(x)
    lava = run_lava(graph, x)
    for name, spikes in sim.spikes.items():
        assert np.array_equal(lava.spikes[name], spikes), name
