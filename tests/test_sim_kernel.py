"""The compiled simulator kernels (snncompile/sim/kernels*.py) against the pure-numpy
simulator they replace: on the property tests' random networks and on stress networks
that wrap and clip every register, both give identical spikes, u/v state, event counts,
overflow counts and strict-mode errors."""
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from snncompile.errors import OverflowDetected, UnsupportedError
from snncompile.ir import (Flatten, FxConv2d, FxDense, FxGate, FxLI, FxLIF, FxSigmaDelta,
                           Graph, Input, Output)
from snncompile.backends.sim import Simulator, kernels_plan

from hypothesis_profile import examples
from strategies import fixed_networks, recurrent_networks, sigma_delta_networks

pytest.importorskip("numba")
FAST = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow])


def run_both(graph, x, strict=False, **kw):
    a = Simulator(graph, kernel="numpy", strict=strict).run(x, **kw)
    sim = Simulator(graph, kernel="numba", strict=strict)
    assert sim.kernel == "numba", sim.kernel_reason
    b = sim.run(x, **kw)
    assert (a.kernel, b.kernel) == ("numpy", "numba")
    return a, b


def strict_errors(graph, x) -> list[str]:
    """The OverflowDetected message of a strict run on the numpy path and on the kernels
    (both must raise)."""
    errors = []
    for kernel in ("numpy", "numba"):
        with pytest.raises(OverflowDetected) as e:
            Simulator(graph, kernel=kernel, strict=True).run(x)
        errors.append(str(e.value))
    return errors


def assert_same(graph, x, **kw):
    a, b = run_both(graph, x, record_state=True, **kw)
    assert a.spikes.keys() == b.spikes.keys()
    for name in a.spikes:
        assert a.spikes[name].dtype == b.spikes[name].dtype, name
        assert np.array_equal(a.spikes[name], b.spikes[name]), name
    for name in a.state:
        assert np.array_equal(a.state[name][0], b.state[name][0]), f"{name} u"
        assert np.array_equal(a.state[name][1], b.state[name][1]), f"{name} v"
    assert a.counts == b.counts
    assert a.overflow == b.overflow
    return a


# ------------------------------------------------------------- the property networks
@settings(max_examples=examples(60), **FAST)
@given(fixed_networks(), st.sampled_from([1, 3, 64]))
def test_kernel_equals_numpy_on_random_networks(case, batch):
    assert_same(*case, batch_size=batch)


@settings(max_examples=examples(25), **FAST)
@given(fixed_networks(conv=False, delays=True))
def test_kernel_equals_numpy_with_synaptic_delays(case):
    assert_same(*case, batch_size=2)


@settings(max_examples=examples(40), **FAST)
@given(recurrent_networks(neuron_options=True, synapse_bias=True, per_neuron=True),
       st.sampled_from([1, 3]))
def test_kernel_equals_numpy_on_recurrent_networks(case, batch):
    """Recurrent synapses (FxRecDense) run step by step inside their LIF's kernel."""
    assert_same(*case, batch_size=batch)


@settings(max_examples=examples(40), **FAST)
@given(sigma_delta_networks(), st.sampled_from([1, 64]))
def test_kernel_equals_numpy_on_sigma_delta_networks(case, batch):
    assert_same(*case, batch_size=batch)


# ------------------------------------------------------------- stress networks
def _lif(rng, name, shape):
    return FxLIF(name, shape=shape, du=int(rng.integers(0, 4096)),
                 dv=int(rng.choice([0, 4095, int(rng.integers(0, 4096))])),
                 vth=int(rng.choice([1, int(rng.integers(1, 2 ** 17))])),
                 bias_mant=(rng.integers(-4095, 4096, shape) * (rng.random() < .6)
                            ).astype(np.int32),
                 bias_exp=int(rng.integers(0, 8)))


def stress_lif_network(seed: int):
    """Dense (exponents -2..7, 6- to 8-bit weights of any sign mode, unrepresentable
    weights that Lava truncates) or conv (weights far beyond 8 bits) into LIF neurons with
    large biases and thresholds: u wraps, v clips, int32 input wraps and 24-bit
    convolution wraps all happen."""
    rng = np.random.default_rng(seed)
    graded = rng.random() < 0.6
    bits = 8 if graded else 1
    enc = "graded" if graded else "spikes"
    nodes = []
    if rng.random() < 0.35:
        c, h = int(rng.integers(1, 4)), int(rng.integers(3, 7))
        nodes.append(Input("in", shape=(c, h, h), encoding=enc, bits=bits))
        k, s, p = int(rng.integers(1, 4)), int(rng.integers(1, 3)), int(rng.integers(0, 2))
        groups = c if (c > 1 and rng.random() < 0.5) else 1
        o = groups * int(rng.integers(1, 3))
        lo, hi = [(-127, 128), (-3000, 3000), (0, 20000)][int(rng.integers(0, 3))]
        nodes.append(FxConv2d("conv0", weight=rng.integers(lo, hi, (o, c // groups, k, k)),
                              stride=(s, s), padding=(p, p), groups=groups,
                              num_message_bits=bits if graded else 0))
        oh = (h + 2 * p - k) // s + 1
        nodes += [_lif(rng, "lif0", (o, oh, oh)), Flatten("flat")]
        n_in, graded_in = o * oh * oh, False
    else:
        n_in = int(rng.integers(4, 48))
        nodes.append(Input("in", shape=(n_in,), encoding=enc, bits=bits))
        graded_in = graded
    for i in range(1, int(rng.integers(1, 4)) + 1):
        n_out = int(rng.integers(1, 24))
        mode = str(rng.choice(["mixed", "excitatory", "inhibitory"]))
        w = rng.integers(-300, 300, (n_out, n_in))
        delay = rng.integers(0, 4, (n_out, n_in)) if rng.random() < 0.2 else None
        nodes.append(FxDense(f"fc{i}", weight=w, weight_exp=int(rng.integers(-2, 8)),
                             num_weight_bits=int(rng.integers(6, 9)), sign_mode=mode,
                             num_message_bits=bits if (graded_in and i == 1) else 0,
                             delay=delay))
        nodes.append(_lif(rng, f"lif{i}", (n_out,)))
        n_in = n_out
    nodes.append(Output("out"))
    graph = Graph.sequential(nodes)
    n, t = int(rng.integers(1, 4)), int(rng.integers(1, 16))
    shape = graph.input_node().shape
    x = rng.integers(0, 256, (n, t) + shape) if graded else (
        rng.random((n, t) + shape) < rng.uniform(0.2, 0.9)).astype(np.int64)
    return graph, x


def stress_sd_network(seed: int):
    """Sigma-delta chains with large exponents and weights: int32 registers wrap and
    graded spikes exceed their message bits."""
    rng = np.random.default_rng(seed)
    n_in = int(rng.integers(8, 60))
    cum = bool(rng.random() < 0.4)

    def sd(name, shape, role="sigma_delta"):
        return FxSigmaDelta(name, shape=shape, role=role, vth=int(rng.integers(0, 500)),
                            spike_exp=int(rng.integers(0, 8)),
                            state_exp=int(rng.integers(0, 8)), cum_error=cum,
                            num_message_bits=int(rng.choice([8, 16, 24])),
                            bias_mant=(rng.integers(-4000, 4000, shape)
                                       * (rng.random() < .5)).astype(np.int32))

    nodes = [Input("in", shape=(n_in,), encoding="graded", bits=8), sd("enc", (n_in,), "delta")]
    for i in range(1, int(rng.integers(1, 4)) + 1):
        n_out = int(rng.integers(1, 30))
        nodes.append(FxDense(f"fc{i}", weight=(rng.integers(-128, 128, (n_out, n_in)) * 2),
                             weight_exp=int(rng.integers(-3, 8)), num_message_bits=16))
        nodes.append(sd(f"sd{i}", (n_out,), "sigma" if rng.random() < 0.2 else "sigma_delta"))
        n_in = n_out
    nodes.append(Output("out"))
    graph = Graph.sequential(nodes)
    x = rng.integers(0, 256, (int(rng.integers(1, 4)), int(rng.integers(1, 14)), nodes[0].shape[0]))
    return graph, x


@settings(max_examples=examples(60), **FAST)
@given(st.integers(0, 2 ** 32 - 1))
def test_kernel_equals_numpy_on_stress_lif_networks(seed):
    assert_same(*stress_lif_network(seed), batch_size=2)


@settings(max_examples=examples(40), **FAST)
@given(st.integers(0, 2 ** 32 - 1))
def test_kernel_equals_numpy_on_stress_sigma_delta_networks(seed):
    assert_same(*stress_sd_network(seed), batch_size=2)


def test_stress_networks_do_wrap_and_clip():
    """The stress cases above are not vacuous: on fixed seeds every overflow kind the
    simulator counts occurs, and both paths count the same number."""
    seen = {}
    for seed in range(40):
        for make in (stress_lif_network, stress_sd_network):
            for name, kinds in assert_same(*make(seed)).overflow.items():
                for kind, n in kinds.items():
                    seen[kind] = seen.get(kind, 0) + n
    for kind in ("u_wrap", "v_clip", "int32_wrap", "conv_wrap", "message_bits"):
        assert seen.get(kind, 0) > 0, (kind, seen)


def test_strict_errors_are_the_numpy_errors():
    """strict=True raises the same OverflowDetected (node, sample, neuron, step) on both
    paths, and runs clean networks on the kernels without complaint."""
    raised = clean = 0
    for seed in range(60):
        graph, x = stress_lif_network(seed) if seed % 3 else stress_sd_network(seed)
        errors = []
        for kernel in ("numpy", "numba"):
            try:
                sim = Simulator(graph, kernel=kernel, strict=True)
                res = sim.run(x, batch_size=2)
                errors.append(None)
            except OverflowDetected as e:
                errors.append(str(e))
        assert errors[0] == errors[1], (seed, errors)
        raised += errors[0] is not None
        clean += errors[0] is None and res.kernel == "numba"
    assert raised >= 10 and clean >= 3, (raised, clean)


# ------------------------------------------------------------- paths and selection
def test_blas_path_for_dense_input_is_identical(monkeypatch):
    """Binary dense synapses switch to a float32 BLAS product above BLAS_DENSITY active
    inputs, convolutions to im2col above CONV_BLAS_DENSITY; force both everywhere and
    never, same integers (conv wraps included)."""
    rng = np.random.default_rng(0)
    g = Graph.sequential([Input("in", shape=(40,)),
                          FxDense("fc1", weight=rng.integers(-128, 128, (30, 40)) * 2,
                                  weight_exp=2),
                          FxLIF("lif1", shape=(30,), du=100, dv=200, vth=300),
                          FxDense("fc2", weight=rng.integers(-128, 128, (7, 30)) * 2,
                                  weight_exp=-1),
                          FxLIF("lif2", shape=(7,), du=4095, dv=0, vth=50), Output("o")])
    x = (rng.random((5, 20, 40)) < 0.7).astype(np.uint8)
    conv = [stress_lif_network(s) for s in range(30)]
    conv = [c for c in conv if "conv0" in c[0]][:4]
    assert conv
    for density in (0.0, 2.0):
        monkeypatch.setattr(kernels_plan, "BLAS_DENSITY", density)
        monkeypatch.setattr(kernels_plan, "CONV_BLAS_DENSITY", density)
        assert_same(g, x)
        for case in conv:
            assert_same(*case)


def test_selection_env_argument_and_unsupported_graphs(monkeypatch):
    graph, x = stress_lif_network(1)
    monkeypatch.setenv("SNNCOMPILE_SIM_KERNEL", "numpy")
    sim = Simulator(graph)
    assert sim.kernel == "numpy" and "SNNCOMPILE_SIM_KERNEL" in sim.kernel_reason
    assert sim.run(x).kernel == "numpy"
    assert Simulator(graph, kernel="numba").run(x).kernel == "numba"  # argument wins
    monkeypatch.setenv("SNNCOMPILE_SIM_KERNEL", "fast")
    with pytest.raises(UnsupportedError, match="SNNCOMPILE_SIM_KERNEL.*'fast'"):
        Simulator(graph)
    monkeypatch.delenv("SNNCOMPILE_SIM_KERNEL")
    # auto: a small run in a process that has not loaded the kernels stays on numpy
    monkeypatch.setattr(kernels_plan, "_loaded", False)
    assert Simulator(graph).run(x).kernel == "numpy"
    monkeypatch.setattr(kernels_plan, "AUTO_MIN_WORK", 0)
    assert Simulator(graph).run(x).kernel == "numba"
    assert Simulator(graph).run(x.astype(np.float64)).kernel == "numpy"  # not integers
    # a gate has its own kernel (kernels.gate), also when its gain is a synapse's
    g = Graph()
    g.add(Input("in", shape=(4,)))
    g.add(FxDense("fa", weight=np.full((3, 4), 2)), ["in"])
    g.add(FxDense("fg", weight=np.full((3, 4), 2)), ["in"])
    g.add(FxGate("gate", shift=1), ["fa", "fg"])
    g.add(FxLIF("lif", shape=(3,), vth=1), ["gate"])
    g.add(Output("o"), ["lif"])
    sim = Simulator(g, kernel="numba")
    assert sim.kernel == "numba" and sim.kernel_reason == "compiled kernels (numba)"
    assert type(sim._dispatch.plan_for(1).kernels["gate"]).__name__ == "_GateK"
    assert sim.run(np.ones((1, 3, 4), np.int64)).kernel == "numba"
    assert_same(g, np.ones((2, 3, 4), np.int64))


def test_empty_runs():
    for make in (stress_lif_network, stress_sd_network):
        graph, x = make(2)
        assert_same(graph, x[:, :0])
        assert_same(graph, x[:0])


def test_neuron_fed_by_the_input_directly():
    """A LIF layer reading the input with no synapse (its window is the input's own)."""
    rng = np.random.default_rng(5)
    g = Graph.sequential([
        Input("in", shape=(6,), encoding="graded", bits=6),
        FxLIF("lif0", shape=(6,), du=10, dv=20, vth=20, bias_mant=np.arange(6)),
        FxDense("fa", weight=rng.integers(-128, 128, (5, 6)) * 2, weight_exp=3),
        FxLIF("lif1", shape=(5,), du=300, dv=0, vth=40), Output("o")])
    assert_same(g, rng.integers(0, 64, (3, 9, 6)))


@pytest.mark.lava
@settings(max_examples=examples(6), **FAST)
@given(fixed_networks(conv=None, max_layers=2))
def test_kernel_equals_lava(case):
    from snncompile.backends.lava.run import run_lava
    graph, x = case
    res = Simulator(graph, kernel="numba").run(x)
    lava = run_lava(graph, x)
    assert res.kernel == "numba"
    for name, spikes in res.spikes.items():
        assert np.array_equal(lava.spikes[name], spikes), name


def test_one_sample_split_across_threads(monkeypatch):
    """With SNNCOMPILE_SIM_SPLIT=1, at batch 1 a dense layer of >= 512 outputs is computed
    in two column halves on two threads (input events counted once)."""
    monkeypatch.setenv("SNNCOMPILE_SIM_THREADS", "2")
    monkeypatch.setattr(kernels_plan, "SPLIT", True)
    rng = np.random.default_rng(8)
    g = Graph.sequential([Input("in", shape=(50,)),
                          FxDense("fc1", weight=rng.integers(-128, 128, (600, 50)) * 2),
                          FxLIF("lif1", shape=(600,), du=500, dv=100, vth=150),
                          FxDense("fc2", weight=rng.integers(-128, 128, (530, 600)) * 2,
                                  weight_exp=-2),
                          FxLIF("lif2", shape=(530,), du=500, dv=100, vth=40), Output("o")])
    x = (rng.random((2, 12, 50)) < 0.3).astype(np.uint8)
    a = assert_same(g, x, batch_size=1)
    assert a.counts["fc2"]["input_events"] > 0


def _long_rows_network(seed: int, n_in: int = 700):
    """Every input active in some steps, weights at the int8 mantissa limits (-128, 127):
    a row sum leaves int16 after 256 rows, so the kernel's int16 accumulation must
    widen in chunks (kernels._row_sum); u wraps and v clips along the way."""
    rng = np.random.default_rng(seed)
    w = np.where(rng.random((24, n_in)) < 0.5, -256, 254)
    w[:8] = -256
    w[8:16] = 254
    g = Graph.sequential([Input("in", shape=(n_in,)),
                          FxDense("fc1", weight=w, weight_exp=int(rng.integers(-2, 3))),
                          FxLIF("lif1", shape=(24,), du=int(rng.integers(0, 4096)), dv=300,
                                vth=int(rng.integers(1, 2 ** 17))),
                          FxDense("fc2", weight=rng.integers(-128, 128, (9, 24)) * 2),
                          FxLIF("lif2", shape=(9,), du=100, dv=0, vth=30), Output("o")])
    x = (rng.random((2, 10, n_in)) < rng.uniform(0.3, 0.55, (2, 10, 1))).astype(np.uint8)
    x[:, 2] = 1
    return g, x


@pytest.mark.parametrize("fuse", [True, False])
def test_long_rows_at_the_int16_limits(monkeypatch, fuse):
    """Binary rows summed in int16 chunks, fused with the LIF (dense_lif) or not
    (dense_binary): identical to numpy, and the run did overflow u or v."""
    monkeypatch.setattr(kernels_plan, "FUSE", fuse)
    monkeypatch.setattr(kernels_plan, "BLAS_DENSITY", 2.0)    # always event-driven
    wrapped = 0
    for seed in range(4):
        a = assert_same(*_long_rows_network(seed))
        wrapped += a.overflow["lif1"]["u_wrap"] + a.overflow["lif1"]["v_clip"]
    assert wrapped > 0


def test_graded_messages_on_both_sides_of_the_int32_accumulator():
    """Graded dense synapses accumulate a step in int32 when sum |x| * max|w| < 2**31,
    in int64 otherwise: messages large enough for both kinds of step, int32 wraps of the
    dot product included, identical to numpy."""
    rng = np.random.default_rng(3)
    n_in = 1200        # all active, rows of -128: the sum passes -2**32 (wraps to int32)
    g = Graph.sequential([
        Input("in", shape=(n_in,), encoding="graded", bits=8),
        FxSigmaDelta("enc", shape=(n_in,), role="delta", vth=0, spike_exp=7,
                     num_message_bits=24),
        FxDense("fc1", weight=np.where((rng.random((12, n_in)) < 0.8)
                                       | (np.arange(12) < 4)[:, None], -256, 254),
                weight_exp=-3, num_message_bits=24),
        FxSigmaDelta("sd1", shape=(12,), vth=10), Output("o")])
    x = np.zeros((2, 12, n_in), np.int64)
    x[:, 0] = 255                                     # every input changes by 255 << 7
    for t in range(1, 12):                            # then a varying fraction of them
        change = rng.random((2, n_in)) < rng.uniform(0.01, 0.9)
        x[:, t] = np.where(change, rng.integers(0, 256, (2, n_in)), x[:, t - 1])
    a = assert_same(g, x)
    assert a.overflow["fc1"]["int32_wrap"] > 0      # the dot product left int32
    msgs = np.abs(a.values["enc"].astype(np.int64)).reshape(2, 12, n_in).sum(-1)
    kinds = msgs * 128 < 2 ** 31
    assert kinds.any() and (~kinds & (msgs > 0)).any(), msgs


def _with_readout(graph):
    """The same chain with its last LIF layer made an FxLI readout (same du, dv, bias)."""
    nodes = [graph.node(n) for n in graph.order()]
    i = max(k for k, n in enumerate(nodes) if isinstance(n, FxLIF))
    n = nodes[i]
    nodes[i] = FxLI(n.name, shape=n.shape, du=n.du, dv=n.dv, bias_mant=n.bias_mant,
                    bias_exp=n.bias_exp)
    return Graph.sequential(nodes)


@pytest.mark.parametrize("fuse", [True, False])
def test_li_readout_on_the_kernels(monkeypatch, fuse):
    """FxLI readouts run on the kernels (the LIF kernel at the readout threshold, v as the
    value): identical values, u/v, counts and overflow (would_spike included, which the
    stress networks reach) to numpy, fused with their dense layer or not."""
    monkeypatch.setattr(kernels_plan, "FUSE", fuse)
    would = 0
    for seed in range(30):
        graph, x = stress_lif_network(seed)
        a = assert_same(_with_readout(graph), x, batch_size=2)
        li = [n for n in a.overflow if "would_spike" in a.overflow[n]]
        assert len(li) == 1
        would += a.overflow[li[0]]["would_spike"]
    assert would > 0


def test_li_readout_strict_errors_are_the_numpy_errors():
    raised = 0
    for seed in range(30):
        graph, x = stress_lif_network(seed)
        graph = _with_readout(graph)
        errors = []
        for kernel in ("numpy", "numba"):
            try:
                Simulator(graph, kernel=kernel, strict=True).run(x, batch_size=2)
                errors.append(None)
            except OverflowDetected as e:
                errors.append(str(e))
        assert errors[0] == errors[1], (seed, errors)
        raised += errors[0] is not None
    assert raised >= 5


# ------------------------------------------------------------- attention graphs (mixed path)
from snncompile.ir import ATTENTION_PARTS  # noqa: E402

ATTENTION = [(v, c) for v in sorted(ATTENTION_PARTS) for c in (False, True)
             if c or "sa" not in ATTENTION_PARTS[v]]


def _attention_build(variant, conv, seed, mode):
    import torch

    from snncompile.frontends import graph_from_model
    from snncompile.nn.attention import AttentionSNN
    from snncompile.pipeline import compile_model
    torch.manual_seed(seed)
    lif = {"type": "lif", "du": 0.3, "dv": 0.1, "vth": 0.5}
    steps = 6
    att = {"type": "attention", "kind": variant, "mode": mode, "window": 3 if mode ==
           "causal" else steps, "t_ratio": 1, "c_ratio": 2, "kernel": 3, "gain_bits": 8,
           "name": "att"}
    if conv:
        layers = [{"type": "conv2d", "out": 4, "kernel": 3, "padding": 1, "name": "conv1"},
                  att, dict(lif, name="lif1"), {"type": "flatten"},
                  {"type": "dense", "out": 5, "name": "fc2"}, dict(lif, name="lif2")]
        shape = (2, 5, 5)
    else:
        layers = [{"type": "dense", "out": 12, "name": "fc1"}, att, dict(lif, name="lif1"),
                  {"type": "dense", "out": 5, "name": "fc2"}, dict(lif, name="lif2")]
        shape = (10,)
    model = AttentionSNN({"input": {"shape": list(shape), "encoding": "spikes",
                                    "steps": steps}, "layers": layers})
    with torch.no_grad():
        model.layers[0].module.weight.mul_(3.0)
    rng = np.random.default_rng(seed)
    calib = (rng.random((8, steps) + shape) < 0.4).astype(np.int64)
    x = (rng.random((5, steps) + shape) < 0.4).astype(np.int64)
    import warnings

    from snncompile.pipeline import FidelityWarning
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FidelityWarning)
        return compile_model(graph_from_model(model), "loihi2", calib=calib).graph, x


@pytest.mark.parametrize("mode", ["causal", "window"])
@pytest.mark.parametrize("variant,conv", ATTENTION)
def test_kernel_equals_numpy_on_attention_networks(variant, conv, mode):
    """Gates and co-processor partitions step on their numpy code inside the kernel plan
    (kernels_plan._NumpyK); spikes, u/v, boundary channels, counts and overflow equal the
    numpy path's, at batch 1 and over several samples on the threads."""
    graph, x = _attention_build(variant, conv, 7, mode)
    assert "step on their numpy code" in Simulator(graph, kernel="numba").kernel_reason
    for batch in (1, 5):
        a = assert_same(graph, x, batch_size=batch)
        b = Simulator(graph, kernel="numba").run(x, batch_size=batch)
        assert a.boundary and a.boundary.keys() == b.boundary.keys()
        for ch in a.boundary:
            assert np.array_equal(a.boundary[ch], b.boundary[ch]), ch
        assert any(a.spikes[n].any() for n in a.spikes)


@pytest.mark.parametrize("strict", [False, True])
def test_attention_strict_mode_on_the_mixed_path(strict):
    """strict=True on an attention graph: no error where numpy raises none, same results."""
    graph, x = _attention_build("tcsa", True, 3, "causal")
    a, b = run_both(graph, x, strict=strict)
    for name in a.spikes:
        assert np.array_equal(a.spikes[name], b.spikes[name]), name
    assert a.counts == b.counts and a.overflow == b.overflow


def test_attention_strict_errors_are_the_numpy_errors():
    """A LIF after the gates that clips: the mixed path raises the numpy path's error."""
    graph, x = _attention_build("ca", True, 5, "causal")
    lif = graph.node("lif1")
    # never fires; a bias just under the 24-bit limit: the gated current pushes v over it
    # at the first (sample, neuron, step) where it is positive
    lif.vth, lif.dv, lif.bias_mant, lif.bias_exp = 2 ** 17 - 1, 0, 4095, 11
    errors = strict_errors(graph, x)
    assert errors[0] == errors[1]


@settings(max_examples=examples(8), **FAST)
@given(st.sampled_from(ATTENTION), st.sampled_from(["causal", "window"]),
       st.integers(0, 2**16), st.sampled_from([1, 3]))
def test_kernel_equals_numpy_on_drawn_attention_networks(variant_conv, mode, seed, batch):
    """The mixed path on drawn attention networks (variant, conv or dense, mode, weights
    and inputs from the seed): spikes, u/v, boundary channels, counts and overflow equal
    the numpy path's."""
    graph, x = _attention_build(*variant_conv, seed, mode)
    a = assert_same(graph, x, batch_size=batch)
    b = Simulator(graph, kernel="numba").run(x, batch_size=batch)
    assert a.boundary.keys() == b.boundary.keys()
    for ch in a.boundary:
        assert np.array_equal(a.boundary[ch], b.boundary[ch]), ch


@pytest.mark.parametrize("rounding", ["floor", "nearest_even"])
@pytest.mark.parametrize("relu", [False, True])
@pytest.mark.parametrize("shift", [0, 1, 8])
def test_gate_kernel_equals_the_numpy_gate(rounding, relu, shift):
    """The gate's kernel (kernels.gate) against the numpy gate: graded currents of 24 bits
    from a conv, gains from a second, strided conv upsampled 2x2 onto them (negative and
    far outside the gain range: without strict both compute the same), every rounding,
    ReLU, a second gate fed by the first, and strict mode, where the out-of-range gains
    make both paths raise the same error."""
    rng = np.random.default_rng(shift * 4 + 2 * relu + (rounding == "floor"))
    g = Graph()
    g.add(Input("in", shape=(2, 4, 4), encoding="graded", bits=8))
    g.add(FxConv2d("fa", weight=rng.integers(-3000, 3000, (3, 2, 3, 3)), padding=(1, 1),
                   num_message_bits=8), ["in"])
    g.add(FxConv2d("fg", weight=rng.integers(-40, 120, (1, 2, 2, 2)), stride=(2, 2),
                   num_message_bits=8), ["in"])
    g.add(FxGate("gate", shift=shift, rounding=rounding, relu=relu, upsample=(2, 2)),
          ["fa", "fg"])
    g.add(FxGate("gate2", shift=shift, rounding=rounding, gain_bits=16, upsample=(2, 2)),
          ["gate", "fg"])
    g.add(FxLIF("lif", shape=(3, 4, 4), vth=50, dv=0, du=4095), ["gate2"])
    g.add(Output("o"), ["lif"])
    x = rng.integers(0, 256, (3, 5, 2, 4, 4))
    assert_same(g, x, batch_size=3)
    a, b = run_both(g, x, record_state=True)
    assert a.counts == b.counts and a.counts["gate"]["gate_products"] > 0
    errors = strict_errors(g, x)
    assert errors[0] == errors[1] and "gain outside [0, 255]" in errors[0], errors


def test_a_gate_that_raises_in_strict_mode_raises_the_same_on_the_mixed_path():
    """A gate whose gains exceed its gain range (the co-processor's 8-bit gains into a gate
    told it takes 2-bit ones) raises OverflowDetected in strict mode: the mixed path (the
    gate's kernel counts the gains outside the range, the batch reruns on numpy) raises the
    numpy path's error; without strict both compute the same."""
    from snncompile.ir import FxGate
    graph, x = _attention_build("tcsa", True, 3, "causal")
    gates = graph.nodes(FxGate)
    assert gates
    for gate in gates:
        gate.gain_bits = 2
    errors = strict_errors(graph, x)
    assert errors[0] == errors[1] and "gain outside [0, 3]" in errors[0], errors
    a, b = run_both(graph, x)
    for name in a.spikes:
        assert np.array_equal(a.spikes[name], b.spikes[name]), name


def test_loop_delays_stay_on_numpy(tmp_path):
    """HTDA's top-down loop (FxDelay) answers step n from earlier steps: every node of the
    loop would have to step together, so the graph runs on the numpy loop, and says why."""
    from test_attention_compile import compiled_htda
    build, x = compiled_htda(1, tmp_path)
    sim = Simulator(build.graph, kernel="numba")
    assert sim.kernel == "numpy" and "FxDelay closes a loop" in sim.kernel_reason
