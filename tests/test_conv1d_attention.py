"""Attention after a Conv1d: TA, CA and TCA on a (C, L) current, causal and whole-window.

The training layer pools over L where a (C, H, W) current pools over H and W, and its
gains broadcast over L ((1, 1) per step for TA, (C, 1) for CA); on the chip the same
co-processor ops and gates run on the (C, L) current. Spatial attention (SA and the kinds
that hold it) needs a 2-d map and is refused in one line."""
import warnings

import numpy as np
import pytest
import torch

from snncompile.backends.float_model import run_float
from snncompile.errors import UnsupportedError
from snncompile.frontends.torch_checkpoint import graph_from_model
from snncompile.nn import save_checkpoint
from snncompile.nn.attention import AttentionLayer
from snncompile.nn.checkpoint import model_class
from snncompile.pipeline import FidelityWarning, compile_model
from snncompile.verify.compare import verify

LIF = {"type": "lif", "du": 0.5, "dv": 0.2, "vth": 1.0}
STEPS = 6
CASES = [(k, m) for m in ("causal", "window") for k in ("ta", "ca", "tca")]


def _att(kind, mode):
    return {"type": "attention", "kind": kind, "mode": mode, "window": 3, "c_ratio": 2,
            "t_ratio": 2}


def _cfg(kind, mode, pool=False):
    return {"input": {"shape": [2, 16], "steps": STEPS},
            "layers": [{"type": "conv1d", "out": 8, "kernel": 3, "padding": 1}]
            + ([{"type": "avgpool1d", "kernel": 2}] if pool else [])
            + [_att(kind, mode), dict(LIF), {"type": "flatten"},
               {"type": "dense", "out": 5}, dict(LIF)]}


def _model(cfg, seed=0):
    torch.manual_seed(seed)
    model = model_class(cfg)(cfg)
    gates = {id(p) for m in model.modules() if isinstance(m, AttentionLayer)
             for p in m.parameters()}
    with torch.no_grad():        # synapses strong enough that every layer fires
        for p in model.parameters():
            if id(p) not in gates:
                p.mul_(3.0)
    return model.eval()


def _verified(tmp_path, model):
    """(build, verify report) of `model` compiled for loihi2 on `_x()`, after checking that
    reference, simulator and Lava (2 samples) agree on every spike and gain."""
    path = tmp_path / "m.pt"
    save_checkpoint(model, path)
    x = _x()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FidelityWarning)
        build = compile_model(path, "loihi2", calib=x)
    rep = verify(build, x, backends=("sim", "reference", "lava"), lava_samples=2,
                 sensitivity=0)
    assert rep.equivalent and rep.mismatches == 0, rep.text()
    return build, rep


def _x(seed=0, n=12):
    return (np.random.default_rng(seed).random((n, STEPS, 2, 16)) < .5).astype(np.int64)


@pytest.mark.parametrize("kind,mode", CASES)
def test_1d_attention_equals_the_2d_layer_on_the_height_1_view(kind, mode):
    """A (C, L) attention layer computes what the (C, H, W) layer (checked against the
    released definitions in tests/test_attention_*) computes on the (C, 1, L) view."""
    torch.manual_seed(1)
    one = AttentionLayer(_att(kind, mode), (8, 16), STEPS, "a")
    two = AttentionLayer(_att(kind, mode), (8, 1, 16), STEPS, "a")
    two.load_state_dict(one.state_dict())
    x = torch.randn(3, STEPS, 8, 16)
    with torch.no_grad():
        torch.testing.assert_close(one(x), two(x[:, :, :, None, :])[:, :, :, 0, :])


@pytest.mark.parametrize("pool", [False, True])
@pytest.mark.parametrize("kind,mode", CASES)
def test_float_graph_equals_the_training_model(kind, mode, pool):
    model = _model(_cfg(kind, mode, pool))
    graph = graph_from_model(model)
    x = _x(2, 4)
    with torch.no_grad():
        want = model(torch.as_tensor(x, dtype=torch.float32)).numpy() > 0
    out = run_float(graph, x)
    name = graph.inputs(graph.output_node().name)[0]
    assert want.sum() > 0 and np.array_equal(out[name], want)


@pytest.mark.parametrize("kind,mode", CASES)
def test_compiled_reference_simulator_and_lava_agree_and_follow_the_float_model(
        tmp_path, kind, mode):
    build, rep = _verified(tmp_path, _model(_cfg(kind, mode, pool=(kind == "tca"))))
    assert any(b["channel"].endswith(".g_ta") or b["channel"].endswith(".g_ca")
               for b in rep.boundary)               # gains crossed the boundary
    lif1 = {r["layer"]: r for r in rep.fidelity.layers}["lif1"]
    assert lif1["compiled"] > 50 and abs(lif1["difference"]) <= 0.05, rep.fidelity.text()
    assert lif1["correlation"] >= 0.95
    gates = [n for n in build.graph.order() if ".gate_" in n]
    assert gates and all(build.graph.shape(g) == build.graph.shape("lif1") for g in gates)


@pytest.mark.parametrize("kind", ["sa", "csa", "tsa", "tcsa"])
def test_spatial_attention_after_conv1d_is_refused_in_one_line(kind):
    with pytest.raises(UnsupportedError, match=rf"attention1: attention '{kind}' needs a "
                       r"\(C, H, W\) input, got \(8, 16\); use ta, ca or tca"):
        _model(_cfg(kind, "causal"))


@pytest.mark.parametrize("kind,mode", [("ca", "causal"), ("tca", "window")])
def test_attention_at_the_end_of_a_conv1d_residual_body(tmp_path, kind, mode):
    """Att_Res_SNN's block on 1-d currents: conv1d, lif, conv1d, attention in the body,
    a 1x1 conv1d shortcut. In window mode the gates act on the co-processor's delayed copy
    of the current, which Lava must deliver in the conv1d's (L, 1, C) layout to add to the
    shortcut's current (a different layout was refused in Lava before)."""
    cfg = {"input": {"shape": [2, 16], "steps": STEPS}, "layers": [
        {"type": "conv1d", "out": 8, "kernel": 3, "padding": 1}, dict(LIF),
        {"type": "residual",
         "body": [{"type": "conv1d", "out": 8, "kernel": 3, "padding": 1}, dict(LIF),
                  {"type": "conv1d", "out": 8, "kernel": 3, "padding": 1}, _att(kind, mode)],
         "shortcut": [{"type": "conv1d", "out": 8, "kernel": 1}]}, dict(LIF),
        {"type": "flatten"}, {"type": "dense", "out": 5}, dict(LIF)]}
    _, rep = _verified(tmp_path, _model(cfg))
    for r in rep.fidelity.layers:
        if r["layer"] != "lif3":                      # the 5-neuron output: few spikes
            assert r["compiled"] > 500 and abs(r["difference"]) <= 0.05, rep.fidelity.text()
