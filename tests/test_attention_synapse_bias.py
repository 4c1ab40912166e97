"""A synapse bias in front of an attention layer (conv + bias [+ BatchNorm] + attention +
LIF, the MA-SNN authors' block) compiles exactly.

In the float model the gain multiplies the whole synapse current W x + b. The reference
and the simulator add the bias to the synapse's output, so the co-processor and the gate
see current + bias; Lava sums the bias axon's Dense with the synapse's output into every
port that reads it (the gate's and the co-processor's). Reference == simulator == Lava,
spikes and boundary values; the float graph == the training model; a checkpoint with
conv + batchnorm + avgpool + attention + lif compiles for loihi2 and verifies."""
import numpy as np
import pytest
import torch

from snncompile.backends.float_model import run_float
from snncompile.backends.reference import reference_run
from snncompile.backends.sim import Simulator
from snncompile.frontends import graph_from_model
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hypothesis_profile import examples

from snncompile.ir import ATTENTION_PARTS, FxCoproc, FxGate
from snncompile.nn.attention import AttentionSNN
from snncompile.pipeline import compile_model
from agreement import cli_compile_and_verify
from agreement import lava_equals_simulator as _lava_equals_simulator

LIF = {"type": "lif", "du": 0.3, "dv": 0.1, "vth": 0.5}
#: every single variant and the full chain (SA needs a conv current), both modes
CASES = [("ca", "causal"), ("sa", "causal"), ("ta", "causal"), ("tcsa", "causal"),
         ("tcsa", "window")]


def biased_net(variant: str, mode: str, seed: int, bn: bool = False, pool: bool = False,
               random_bias: bool = False):
    torch.manual_seed(seed)
    att = {"type": "attention", "kind": variant, "mode": mode, "window": 3, "t_ratio": 1,
           "c_ratio": 2, "kernel": 3, "gain_bits": 8, "name": "att"}
    layers = [{"type": "conv2d", "out": 4, "kernel": 3, "padding": 1, "bias": True,
               "name": "conv1"}]
    layers += [{"type": "batchnorm", "name": "bn1"}] if bn else []
    layers += [{"type": "avgpool2d", "kernel": 2}] if pool else []
    side = 4 if pool else 5
    layers += [att, dict(LIF, name="lif1"), {"type": "flatten"},
               {"type": "dense", "out": 5, "name": "fc2"}, dict(LIF, name="lif2")]
    model = AttentionSNN({"input": {"shape": [2, side, side], "encoding": "spikes",
                                    "steps": 8}, "layers": layers})
    with torch.no_grad():
        conv = model.layers[0].module
        conv.weight.mul_(3.0)
        conv.bias.copy_(torch.tensor([0.6, -0.4, 0.3, 0.0]))   # both signs, one zero
        if random_bias:
            conv.bias.copy_(torch.randn(4) * 0.6)
        if bn:
            bnm = model.layers[1].module
            bnm.running_mean.copy_(torch.tensor([0.1, -0.2, 0.0, 0.3]))
            bnm.running_var.copy_(torch.tensor([0.5, 2.0, 1.0, 0.8]))
            bnm.weight.copy_(torch.tensor([1.2, 0.8, 1.0, 1.5]))
            bnm.bias.copy_(torch.tensor([0.2, -0.1, 0.4, 0.0]))
    return model.eval()


def compiled(variant, mode, seed=3, n=3, steps=8, **kw):
    """(build for loihi2 with calibration data, n test inputs) of `biased_net`."""
    graph = graph_from_model(biased_net(variant, mode, seed, **kw))
    rng = np.random.default_rng(seed)
    shape = graph.input_node().shape
    calib = (rng.random((16, steps) + shape) < 0.4).astype(np.int64)
    x = (rng.random((n, steps) + shape) < 0.4).astype(np.int64)
    return compile_model(graph, "loihi2", calib=calib), x


def _has_biased_synapse_into_attention(g) -> bool:
    return any(getattr(g.node(n), "bias_mant", None) is not None
               and any(isinstance(g.node(d), (FxGate, FxCoproc)) for d in g.outputs(n))
               for n in g.order())


@pytest.mark.parametrize("variant, mode", CASES)
def test_reference_equals_simulator_with_a_bias_into_attention(variant, mode):
    build, x = compiled(variant, mode)
    g = build.graph
    assert _has_biased_synapse_into_attention(g)
    ref = reference_run(g, x)
    for kernel in ("numpy", "numba"):
        sim = Simulator(g, kernel=kernel).run(x)
        assert any(s.any() for s in sim.spikes.values())
        for name, spikes in sim.spikes.items():
            assert np.array_equal(ref[name], spikes), (kernel, name)
        assert sim.boundary
        for name, values in sim.boundary.items():
            assert np.array_equal(ref["@" + name], values), (kernel, name)


random_cases = st.tuples(st.sampled_from(sorted(ATTENTION_PARTS)),
                         st.sampled_from(["causal", "window"]), st.integers(0, 10_000))
SLOW_OK = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow])


@settings(max_examples=examples(10), **SLOW_OK)
@given(random_cases)
def test_reference_equals_simulator_on_random_biased_attention_networks(case):
    variant, mode, seed = case
    build, x = compiled(variant, mode, seed, random_bias=True)
    assert _has_biased_synapse_into_attention(build.graph)
    ref = reference_run(build.graph, x)
    sim = Simulator(build.graph).run(x)
    for name, spikes in sim.spikes.items():
        assert np.array_equal(ref[name], spikes), name
    for name, values in sim.boundary.items():
        assert np.array_equal(ref["@" + name], values), name


@pytest.mark.lava
@settings(max_examples=examples(3), **SLOW_OK)
@given(random_cases)
def test_lava_equals_simulator_on_random_biased_attention_networks(case):
    variant, mode, seed = case
    _lava_equals_simulator(*compiled(variant, mode, seed, n=2, random_bias=True))


def test_the_bias_reaches_the_coprocessor_and_the_gate():
    """Without its bias the same build computes other boundary values and spikes: the
    tests above compare something the bias changes."""
    import dataclasses
    build, x = compiled("tcsa", "causal")
    g = build.graph
    nodes = [dataclasses.replace(g.node(n), bias_mant=None)
             if getattr(g.node(n), "bias_mant", None) is not None and g.node(n).is_synapse
             else g.node(n) for n in g.order()]
    plain = type(g)()
    for node in nodes:
        plain.add(node, g.inputs(node.name))
    a, b = Simulator(g).run(x), Simulator(plain).run(x)
    assert any(not np.array_equal(a.boundary[k], b.boundary[k]) for k in a.boundary)


@pytest.mark.parametrize("variant, mode", [("tcsa", "causal"), ("ca", "window")])
def test_float_graph_equals_the_training_model_with_bias_and_batchnorm(variant, mode):
    model = biased_net(variant, mode, 9, bn=True, pool=True)
    graph = graph_from_model(model)
    x = (np.random.default_rng(9).random((4, 8) + graph.input_node().shape) < 0.4)
    out = run_float(graph, x.astype(np.float32))
    with torch.no_grad():
        want = model(torch.as_tensor(x, dtype=torch.float32)).numpy()
    assert want.any()
    assert np.array_equal(out["lif2"], want.astype(bool))


@pytest.mark.lava
@pytest.mark.parametrize("variant, mode", CASES)
def test_lava_equals_simulator_with_a_bias_into_attention(variant, mode):
    _lava_equals_simulator(*compiled(variant, mode, n=2))


@pytest.mark.lava
def test_conv_batchnorm_avgpool_attention_checkpoint_compiles_and_verifies(tmp_path):
    """The authors' block as a checkpoint: compile for loihi2 through the CLI; verify's
    backends (reference, simulator, Lava) agree on spikes and boundary values."""
    from snncompile.data import save_inputs
    from snncompile.nn import save_checkpoint
    save_checkpoint(biased_net("tcsa", "causal", 5, bn=True, pool=True), tmp_path / "n.pt")
    rng = np.random.default_rng(5)
    x = (rng.random((18, 6, 2, 4, 4)) < 0.4).astype(np.int64)
    save_inputs(tmp_path / "cal.npz", x[:16], np.zeros(16, np.int64))
    save_inputs(tmp_path / "test.npz", x[16:], np.zeros(2, np.int64))
    cli_compile_and_verify(tmp_path, tmp_path / "n.pt", tmp_path / "cal.npz",
                           tmp_path / "test.npz")
