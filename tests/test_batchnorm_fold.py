"""Training layers with synapse bias and BatchNorm; the checkpoint frontend folds an
eval-mode BatchNorm exactly into the synapse before it (w' = w s, b' = (b - mean) s + beta,
s = gamma / sqrt(var + eps)), so the float graph equals the PyTorch module in eval mode."""
import numpy as np
import pytest
import torch

from snncompile.backends.float_model import FloatContext, evaluate, run_float
from snncompile.errors import UnsupportedError
from snncompile.frontends.torch_checkpoint import graph_from_model, import_checkpoint
from snncompile.nn import SNN, save_checkpoint


def _config(bn=True, bias=True):
    layers = [{"type": "conv2d", "out": 4, "kernel": 3, "padding": 1, "bias": bias}]
    layers += [{"type": "batchnorm"}] if bn else []
    layers += [{"type": "lif", "du": 0.3, "dv": 0.2, "vth": 1.0},
               {"type": "flatten"}, {"type": "dense", "out": 5, "bias": bias}]
    layers += [{"type": "batchnorm", "eps": 1e-3}] if bn else []
    layers += [{"type": "lif", "du": 0.2, "dv": 0.1, "vth": 1.0}]
    return {"input": {"shape": [2, 6, 6]}, "layers": layers}


def _trained_like(model, seed=0):
    """Random statistics and affine parameters, as training leaves them; eval mode."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
                n = m.num_features
                m.running_mean.copy_(torch.randn(n, generator=g) * .5)
                m.running_var.copy_(torch.rand(n, generator=g) * 2 + .1)
                m.weight.copy_(torch.randn(n, generator=g) * .5 + 1)
                m.bias.copy_(torch.randn(n, generator=g) * .3)
            elif isinstance(m, (torch.nn.Linear, torch.nn.Conv2d)) and m.bias is not None:
                m.bias.copy_(torch.randn(m.bias.shape, generator=g) * .3)
    return model.eval()


def _x(seed=0, n=6, t=12):
    rng = np.random.default_rng(seed)
    return (rng.random((n, t, 2, 6, 6)) < .3).astype(np.float32)


def _module_currents(model, x):
    """The PyTorch module's synapse(+batchnorm) currents into each LIF, eval mode."""
    out, h = [], torch.as_tensor(x)
    with torch.no_grad():
        for spec, layer in zip(model.config["layers"], model.layers):
            h = layer(h)
            if spec["type"] in ("dense", "conv2d", "batchnorm"):
                cur = h
            if spec["type"] == "lif":
                out.append(cur)
    return out


@pytest.mark.parametrize("bias", [True, False])
def test_folded_float_graph_equals_the_module_in_eval_mode(tmp_path, bias):
    torch.manual_seed(0)
    model = _trained_like(SNN(_config(bias=bias)))
    save_checkpoint(model, tmp_path / "m.pt")
    graph = import_checkpoint(tmp_path / "m.pt")
    assert graph.meta["folded"] == [{"batchnorm": "batchnorm1", "into": "conv2d1"},
                                    {"batchnorm": "batchnorm2", "into": "dense1"}]
    assert [n for n in graph.order() if "batchnorm" in n] == []
    x = _x()
    with torch.no_grad():
        values = evaluate(graph, torch.as_tensor(x), FloatContext())
    for syn, want in zip(("conv2d1", "dense1"), _module_currents(model, x)):
        np.testing.assert_allclose(values[syn].numpy(), want.numpy(), rtol=1e-5, atol=1e-5)
    with torch.no_grad():
        spikes = model(torch.as_tensor(x)).numpy()
    assert np.array_equal(run_float(graph, x)["lif2"], spikes.astype(bool)) and spikes.any()


def test_the_fold_is_the_textbook_formula():
    from snncompile.frontends.torch_checkpoint import fold_batchnorm
    from snncompile.ir import Dense
    bn = torch.nn.BatchNorm1d(3, eps=0.01).eval()
    with torch.no_grad():
        bn.running_mean.copy_(torch.tensor([1., -2., 0.5]))
        bn.running_var.copy_(torch.tensor([4., 0.25, 1.]))
        bn.weight.copy_(torch.tensor([2., 1., -1.]))
        bn.bias.copy_(torch.tensor([0.1, 0.2, 0.3]))
    syn = Dense("fc", weight=np.ones((3, 2), np.float32), bias=np.array([3., 0., 1.], np.float32))
    out = fold_batchnorm(syn, bn, "bn")
    s = np.array([2., 1., -1.]) / np.sqrt(np.array([4., .25, 1.]) + .01)
    np.testing.assert_allclose(out.weight, np.ones((3, 2)) * s[:, None], rtol=1e-6)
    np.testing.assert_allclose(out.bias, (np.array([3., 0., 1.]) - [1., -2., .5]) * s
                               + [.1, .2, .3], rtol=1e-6)


def test_a_biased_layer_without_batchnorm_keeps_its_bias(tmp_path):
    model = _trained_like(SNN(_config(bn=False)))
    graph = graph_from_model(model)
    assert "folded" not in graph.meta
    np.testing.assert_array_equal(graph.node("dense1").bias,
                                  model.layers[3].module.bias.detach().numpy())
    x = _x(1)
    with torch.no_grad():
        spikes = model(torch.as_tensor(x)).numpy().astype(bool)
    assert np.array_equal(run_float(graph, x)["lif2"], spikes)


@pytest.mark.parametrize("layers, before", [
    ([{"type": "batchnorm"}, {"type": "lif", "du": .1, "dv": .1}], "the input"),
    ([{"type": "dense", "out": 3}, {"type": "lif", "du": .1, "dv": .1}, {"type": "batchnorm"},
      {"type": "lif", "du": .1, "dv": .1}], "lif")])
def test_batchnorm_not_after_a_synapse_is_refused(layers, before):
    with pytest.raises(UnsupportedError, match=f"batchnorm must directly follow a dense or "
                                               f"conv2d layer .*not {before}"):
        SNN({"input": {"shape": [4]}, "layers": layers})


def test_bias_must_be_a_boolean():
    with pytest.raises(UnsupportedError, match="'bias' = 'yes' must be true or false"):
        SNN({"input": {"shape": [4]}, "layers": [{"type": "dense", "out": 2, "bias": "yes"},
                                                 {"type": "lif", "du": .1, "dv": .1}]})


def test_a_checkpoint_with_batchnorm_compiles_and_backends_agree(tmp_path):
    from snncompile.backends.sim import Simulator
    from snncompile.backends.reference import reference_run
    from snncompile.pipeline import compile_model
    model = _trained_like(SNN(_config()))
    save_checkpoint(model, tmp_path / "m.pt")
    x = _x(2, n=16).astype(np.int64)
    np.savez(tmp_path / "calib.npz", inputs=x)
    build = compile_model(str(tmp_path / "m.pt"), "loihi2", calib=str(tmp_path / "calib.npz"))
    g = build.graph
    assert g.node("conv2d1").bias_mant is not None and g.node("dense1").bias_mant is not None
    ref = reference_run(g, x)
    sim = Simulator(g).run(x)
    for name in ref:
        assert np.array_equal(ref[name], sim.spikes[name]), name
    # the compile report says what was folded and which synapses carry a bias axon
    rep, md = build.report, build.report_md
    assert rep["folded"] == [{"batchnorm": "batchnorm1", "into": "conv2d1"},
                             {"batchnorm": "batchnorm2", "into": "dense1"}]
    axons = {r["synapse"]: r for r in rep["synapse_bias"]}
    assert set(axons) == {"conv2d1", "dense1"} and axons["dense1"]["into"] == ["lif2"]
    assert axons["conv2d1"]["synapses"] == int(np.count_nonzero(
        g.node("conv2d1").bias_mant)) * 36
    assert axons["dense1"]["bias_max_abs_error"] is not None
    assert "## Synapse bias and BatchNorm folding" in md
    assert "BatchNorm batchnorm1 folded into conv2d1" in md
    assert "1 input axon per core holding lif2" in md
    # energy: the bias axons' synaptic events and messages are charged and said
    from snncompile.energy.run import energy_report
    energy, _ = energy_report(build, x[:4])
    assert energy.events["lif2"]["bias_synops"] == 12 * int(np.count_nonzero(
        g.node("dense1").bias_mant))
    assert any("bias axon of conv2d1" in n for n in energy.notes)
    assert "lif2" in energy.table() and energy.to_json()["events"]["lif2"]["bias_messages"] > 0
