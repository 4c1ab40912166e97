"""MA-SNN attention modules, the attention SNN, HTDA and the event data set."""
import math

import numpy as np
import pytest
import torch

from examples.datasets.events import CLASSES, digits_images, event_timing
from snncompile.errors import UnsupportedError
from snncompile.nn import SNN, save_checkpoint
from snncompile.nn.attention import (TCSA, AttentionSNN, ChannelAttention, SpatialAttention,
                                     TemporalAttention, apply_gain_int, gain_to_int,
                                     load_attention_checkpoint, quantize_gain)
from snncompile.nn.htda import HTDA, htda_loss, load_htda_checkpoint, tv_term

torch.set_num_threads(1)


def sig(v):
    return 1.0 / (1.0 + math.exp(-v))


def set_mlp(mlp, w1, w2):
    with torch.no_grad():
        mlp[0].weight.copy_(torch.tensor(w1, dtype=torch.float32))
        mlp[2].weight.copy_(torch.tensor(w2, dtype=torch.float32))


# ---------------------------------------------------------------- hand-computed cases
def test_channel_attention_window_by_hand():
    ca = ChannelAttention(2, c_ratio=2, mode="window")          # MLP 2 -> 1 -> 2
    set_mlp(ca.mlp, [[1.0, 0.0]], [[1.0], [-1.0]])
    # (B, T, C, H, W) = (1, 2, 2, 1, 2); channel 0 holds 1..4, channel 1 holds 0,-1,1,0
    x = torch.tensor([[[[[1., 2.]], [[0., -1.]]], [[[3., 4.]], [[1., 0.]]]]])
    g = ca(x)
    # avg = (2.5, 0), max = (4, 1): MLP(avg) = (2.5, -2.5), MLP(max) = (4, -4)
    assert g.shape == (1, 1, 2, 1, 1)
    assert torch.allclose(g.flatten(), torch.tensor([sig(6.5), sig(-6.5)]))


def test_channel_attention_causal_by_hand():
    ca = ChannelAttention(2, c_ratio=2, mode="causal")
    set_mlp(ca.mlp, [[1.0, 0.0]], [[1.0], [-1.0]])
    x = torch.tensor([[[[[1., 2.]], [[0., -1.]]], [[[3., 4.]], [[1., 0.]]]]])
    g = ca(x)
    # step 0: avg (1.5, -0.5), max (2, 0) -> 3.5; step 1: avg (3.5, .5), max (4, 1) -> 7.5
    assert g.shape == (1, 2, 2, 1, 1)
    want = torch.tensor([[sig(3.5), sig(-3.5)], [sig(7.5), sig(-7.5)]])
    assert torch.allclose(g.reshape(2, 2), want)


def test_temporal_attention_window_by_hand():
    ta = TemporalAttention(steps=2, t_ratio=5, mode="window")   # MLP 2 -> 1 -> 2
    set_mlp(ta.mlp, [[1.0, 1.0]], [[1.0], [2.0]])
    x = torch.tensor([1., 3., -2., 0.]).reshape(1, 2, 1, 1, 2)
    g = ta(x)
    # avg (2, -1) -> relu(1) = 1 -> (1, 2); max (3, 0) -> 3 -> (3, 6)
    assert g.shape == (1, 2, 1, 1, 1)
    assert torch.allclose(g.flatten(), torch.tensor([sig(4.0), sig(8.0)]))


def test_temporal_attention_causal_by_hand():
    ta = TemporalAttention(t_ratio=5, mode="causal", window=2)  # MLP 2 -> 1 -> 1
    set_mlp(ta.mlp, [[1.0, 2.0]], [[1.0]])                      # (older, newest)
    x = torch.tensor([1., -2., 3.]).reshape(1, 3, 1, 1, 1)
    g = ta(x)
    # windows (0 pad, 1) -> 2+2; (1, -2) -> relu(-3) = 0 -> 0; (-2, 3) -> 4+4
    assert g.shape == (1, 3, 1, 1, 1)
    assert torch.allclose(g.flatten(), torch.tensor([sig(4.0), 0.5, sig(8.0)]))


def test_spatial_attention_window_by_hand():
    sa = SpatialAttention(kernel=3, mode="window")
    with torch.no_grad():
        sa.conv.weight.zero_()
        sa.conv.weight[0, 0, 1, 1] = 1.0     # avg map, centre
        sa.conv.weight[0, 1, 0, 0] = 0.5     # max map at offset (-1, -1), zero padded
    x = torch.tensor([[1., 2.], [3., 4.], [3., 0.], [1., -2.]]).reshape(1, 1, 2, 2, 2)
    g = sa(x)
    # avg [[2, 1], [2, 1]], max [[3, 2], [3, 4]]; (1, 1) adds 0.5 * max(0, 0) = 1.5
    assert g.shape == (1, 1, 1, 2, 2)
    want = torch.tensor([[sig(2.0), sig(1.0)], [sig(2.0), sig(2.5)]])
    assert torch.allclose(g.reshape(2, 2), want)


def test_spatial_attention_causal_by_hand():
    sa = SpatialAttention(kernel=1, mode="causal")
    with torch.no_grad():
        sa.conv.weight.copy_(torch.tensor([1.0, -1.0]).reshape(1, 2, 1, 1))
    # T = 2, C = 2, H = 1, W = 1: step 0 channels (1, 3), step 1 (2, -4)
    x = torch.tensor([1., 3., 2., -4.]).reshape(1, 2, 2, 1, 1)
    g = sa(x)
    # mean - max: step 0: 2 - 3 = -1; step 1: -1 - 2 = -3
    assert g.shape == (1, 2, 1, 1, 1)
    assert torch.allclose(g.flatten(), torch.tensor([sig(-1.0), sig(-3.0)]))


def test_tcsa_by_hand():
    m = TCSA(channels=1, steps=1, t_ratio=1, c_ratio=1, kernel=1, mode="window")
    set_mlp(m.ta.mlp, [[1.0]], [[1.0]])
    set_mlp(m.ca.mlp, [[1.0]], [[1.0]])
    with torch.no_grad():
        m.sa.conv.weight.fill_(1.0)
    x = torch.tensor([2.0, -2.0]).reshape(2, 1, 1, 1, 1)     # two independent samples
    out = m(x).flatten()
    o1 = 2 * sig(4.0)            # TA: avg = max = 2 -> logit 4
    o2 = o1 * sig(2 * o1)        # CA on the TA output
    o3 = o2 * sig(2 * o2)        # SA (mean + max) on the CA output
    # negative sample: TA relu(-2) = 0 -> 0.5 -> -1; CA -> -0.5; SA sig(-1); ReLU -> 0
    assert torch.allclose(out, torch.tensor([o3, 0.0]))


# ---------------------------------------------------------------- causality and shapes
def _causal_modules():
    torch.manual_seed(0)
    return {"ta": TemporalAttention(t_ratio=2, mode="causal", window=3),
            "ca": ChannelAttention(4, c_ratio=2, mode="causal"),
            "sa": SpatialAttention(3, mode="causal"),
            "tcsa": TCSA(4, t_ratio=2, c_ratio=2, mode="causal", window=3, gain_bits=8)}


@pytest.mark.parametrize("name", ["ta", "ca", "sa", "tcsa"])
def test_causal_variants_ignore_future_steps(name):
    mod = _causal_modules()[name]
    x = torch.randn(2, 8, 4, 5, 5)
    base = mod(x)
    for t in range(7):
        x2 = x.clone()
        x2[:, t + 1:] = torch.randn_like(x2[:, t + 1:]) * 3
        out = mod(x2)
        assert torch.equal(out[:, :t + 1], base[:, :t + 1]), f"step {t} saw the future"
        assert not torch.equal(out, base)


def test_window_variants_do_see_the_future():
    torch.manual_seed(0)
    mods = [TemporalAttention(steps=6, t_ratio=2), ChannelAttention(4, 2), SpatialAttention(3)]
    x = torch.randn(1, 6, 4, 5, 5)
    x2 = x.clone()
    x2[:, -1] += 5.0
    for mod in mods:
        g, g2 = (mod(v).expand(1, 6, 4, 5, 5) for v in (x, x2))
        assert not torch.allclose(g[:, 0], g2[:, 0])


def test_gain_shapes_window_vs_causal():
    x = torch.randn(3, 6, 4, 5, 5)
    d = torch.randn(3, 6, 4)
    assert TemporalAttention(6, 2)(x).shape == (3, 6, 1, 1, 1)
    assert TemporalAttention(mode="causal", window=2)(x).shape == (3, 6, 1, 1, 1)
    assert ChannelAttention(4, 2)(x).shape == (3, 1, 4, 1, 1)
    assert ChannelAttention(4, 2, "causal")(x).shape == (3, 6, 4, 1, 1)
    assert SpatialAttention(3)(x).shape == (3, 1, 1, 5, 5)
    assert SpatialAttention(3, "causal")(x).shape == (3, 6, 1, 5, 5)
    assert TemporalAttention(6, 2)(d).shape == (3, 6, 1)
    assert ChannelAttention(4, 2)(d).shape == (3, 1, 4)
    assert ChannelAttention(4, 2, "causal")(d).shape == (3, 6, 4)
    c1 = torch.randn(3, 6, 4, 7)                    # a conv1d's (C, L) current
    assert TemporalAttention(6, 2)(c1).shape == (3, 6, 1, 1)
    assert ChannelAttention(4, 2)(c1).shape == (3, 1, 4, 1)
    assert ChannelAttention(4, 2, "causal")(c1).shape == (3, 6, 4, 1)
    with pytest.raises(UnsupportedError, match="1-d layer has no 2-d spatial map"):
        SpatialAttention(3)(c1)
    for mode, kw in (("window", {"steps": 6}), ("causal", {"window": 2})):
        assert TCSA(4, mode=mode, **kw)(x).shape == x.shape
    with pytest.raises(UnsupportedError, match="spatial"):
        SpatialAttention(3)(d)
    with pytest.raises(UnsupportedError, match="window"):
        TemporalAttention(mode="causal")
    with pytest.raises(UnsupportedError, match="mode 'stream'"):
        ChannelAttention(4, mode="stream")


# ---------------------------------------------------------------- gain quantisation
def test_quantized_gain_is_on_the_8_bit_grid_and_passes_gradient():
    s = torch.linspace(0.0, 1.0, 1001, requires_grad=True)
    q = quantize_gain(s, 8)
    k = q.detach() * 256
    assert torch.equal(k, k.round()) and k.min() == 0 and k.max() == 255
    low = s.detach() < 255.5 / 256            # rounding error at most half a step,
    assert torch.all((q.detach() - s.detach())[low].abs() <= 1 / 512 + 1e-7)
    assert torch.all(q.detach()[~low] == 255 / 256)    # then clamped to 255 / 256
    (q * torch.arange(1001.0)).sum().backward()
    assert torch.equal(s.grad, torch.arange(1001.0))    # straight through
    assert quantize_gain(s, None) is s


@pytest.mark.parametrize("mod", [TemporalAttention(6, 2, gain_bits=8),
                                 ChannelAttention(4, 2, "causal", gain_bits=8),
                                 SpatialAttention(3, "causal", gain_bits=8)])
def test_module_gains_are_multiples_of_1_256_and_train(mod):
    x = torch.randn(2, 6, 4, 5, 5)
    g = mod(x)
    k = g.detach() * 256
    assert torch.equal(k, k.round())
    (g * x).sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in mod.parameters())


def test_integer_gain_semantics():
    assert gain_to_int([0.0, 0.0019, 0.5, 0.502, 0.999, 1.0]).tolist() == \
        [0, 0, 128, 129, 255, 255]
    # (a * g) >> 8 floors toward -inf (arithmetic shift)
    assert apply_gain_int([-3, 3, 1000, -1000], 128).tolist() == [-2, 1, 500, -500]
    assert apply_gain_int(1000, 255).tolist() == 996
    # the float training gain and the chip's integer gain agree
    s = torch.rand(50)
    assert np.array_equal(gain_to_int(s.numpy()),
                          (quantize_gain(s, 8) * 256).round().numpy().astype(np.int64))


# ---------------------------------------------------------------- the attention SNN
ATT_CONFIG = {
    "input": {"shape": [2, 6, 6], "encoding": "spikes", "steps": 5},
    "layers": [
        {"type": "conv2d", "out": 4, "kernel": 3, "padding": 1, "name": "conv1"},
        {"type": "attention", "kind": "tcsa", "mode": "causal", "window": 3, "t_ratio": 2,
         "c_ratio": 2, "kernel": 3, "gain_bits": 8, "name": "att1"},
        {"type": "lif", "du": 0.2, "dv": 0.1, "vth": 0.5, "bias": True, "name": "lif1"},
        {"type": "sumpool2d", "kernel": 2},
        {"type": "flatten"},
        {"type": "dense", "out": 8, "name": "fc2"},
        {"type": "attention", "kind": "ca", "mode": "window", "c_ratio": 4, "name": "att2"},
        {"type": "lif", "du": 0.2, "dv": 0.1, "vth": 0.5, "name": "lif2"},
        {"type": "dense", "out": 3, "name": "fc3"},
        {"type": "attention", "kind": "ta", "mode": "window", "t_ratio": 2, "name": "att3"},
        {"type": "lif", "du": 0.2, "dv": 0.1, "vth": 0.5, "name": "lif3"},
    ],
}


def _spikes(shape, seed=0, p=0.4):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(shape, generator=g) < p).float()


def test_attention_multiplies_the_lif_current():
    torch.manual_seed(0)
    model = AttentionSNN(ATT_CONFIG)
    x = _spikes((2, 5, 2, 6, 6))
    cur = model.layers[0](x)
    att = model.layers[1]
    att.keep_gains = True
    out = att(cur)
    g = att.last_gains
    assert torch.allclose(out, torch.relu(g["sa"] * (g["ca"] * (g["ta"] * cur))))
    assert (out >= 0).all()


def test_attention_checkpoint_round_trip_weights_only(tmp_path):
    torch.manual_seed(0)
    model = AttentionSNN(ATT_CONFIG)
    path = tmp_path / "att.pt"
    save_checkpoint(model, path)
    raw = torch.load(path, weights_only=True)
    assert raw["config"] == ATT_CONFIG
    loaded, _ = load_attention_checkpoint(path)
    x = _spikes((3, 5, 2, 6, 6), seed=1)
    with torch.no_grad():
        assert torch.equal(model.eval()(x), loaded(x))


def test_attention_config_errors():
    bad = {**ATT_CONFIG, "layers": [dict(s) for s in ATT_CONFIG["layers"]]}
    bad["layers"][1], bad["layers"][2] = bad["layers"][2], bad["layers"][1]
    with pytest.raises(UnsupportedError, match="att1: attention must sit between"):
        AttentionSNN(bad)
    dense_sa = {**ATT_CONFIG, "layers": [dict(s) for s in ATT_CONFIG["layers"]]}
    dense_sa["layers"][6]["kind"] = "sa"
    with pytest.raises(UnsupportedError, match="att2: attention 'sa' needs"):
        AttentionSNN(dense_sa)
    wrong = {**ATT_CONFIG, "layers": [dict(s) for s in ATT_CONFIG["layers"]]}
    wrong["layers"][1]["kind"] = "xa"
    with pytest.raises(UnsupportedError, match="supported: ta, ca, sa, tca, tsa, csa, tcsa"):
        AttentionSNN(wrong)


def test_attention_snn_gradients_reach_every_attention_parameter():
    torch.manual_seed(0)
    model = AttentionSNN(ATT_CONFIG)
    with torch.no_grad():
        model.layers[0].module.weight.mul_(3.0)
    out = model(_spikes((4, 5, 2, 6, 6)))
    assert out.sum() > 0
    out.sum().backward()
    for name, p in model.named_parameters():
        if ".block." in name:
            assert p.grad is not None and p.grad.abs().sum() > 0, name


# ---------------------------------------------------------------- HTDA
HTDA_CONFIG = {
    "model": "htda",
    "input": {"shape": [1, 8, 8], "encoding": "spikes"},
    "layers": [
        {"type": "conv2d", "out": 3, "kernel": 3, "padding": 1, "name": "conv1"},
        {"type": "lif", "du": 0.3, "dv": 0.2, "vth": 0.5, "name": "lif1"},
        {"type": "conv2d", "out": 4, "kernel": 3, "padding": 1, "name": "conv2"},
        {"type": "lif", "du": 0.3, "dv": 0.2, "vth": 0.5, "name": "lif2"},
        {"type": "sumpool2d", "kernel": 2},
        {"type": "conv2d", "out": 4, "kernel": 1, "name": "conv3"},
        {"type": "lif", "du": 0.3, "dv": 0.2, "vth": 0.5, "name": "lif3"},
        {"type": "flatten"},
        {"type": "dense", "out": 3, "name": "fc4"},
        {"type": "lif", "du": 0.3, "dv": 0.2, "vth": 0.5, "name": "lif4"},
    ],
    "htda": {"target": "lif1", "source": "lif2", "hidden": 4, "kernel": 3, "latency": 1,
             "init_bias": 0.0},
}


def _htda(latency=1, source="lif2", seed=0):
    torch.manual_seed(seed)
    cfg = {**HTDA_CONFIG, "htda": {**HTDA_CONFIG["htda"], "latency": latency,
                                    "source": source}}
    model = HTDA(cfg)
    with torch.no_grad():
        for layer in model.snn.layers:
            if hasattr(layer, "module") and hasattr(layer.module, "weight"):
                layer.module.weight.mul_(3.0)
        model.ann[0].weight.mul_(4.0)
    return model


@pytest.mark.parametrize("latency", [1, 2])
@pytest.mark.parametrize("source", ["lif2", "lif3"])
def test_htda_map_at_t_ignores_activity_from_t_minus_latency_plus_1(latency, source):
    model = _htda(latency, source)
    x = _spikes((2, 8, 1, 8, 8), seed=3)
    rec: dict = {}
    with torch.no_grad():
        _, maps = model(x, record=rec, return_maps=True)
    assert rec["lif2"]["spikes"].sum() > 0 and rec[source]["spikes"].sum() > 0
    assert torch.equal(maps[:, :latency], torch.ones_like(maps[:, :latency]))
    assert maps.shape == (2, 8, 1, 8, 8)
    for t in range(latency, 8):
        x2 = x.clone()
        x2[:, t - latency + 1:] = _spikes(x2[:, t - latency + 1:].shape, seed=10 + t, p=0.9)
        with torch.no_grad():
            _, m2 = model(x2, return_maps=True)
        assert torch.equal(m2[:, :t + 1], maps[:, :t + 1]), f"map at {t} saw later activity"
    x3 = x.clone()
    x3[:, 0] = 1.0 - x3[:, 0]      # earlier activity does change later maps
    with torch.no_grad():
        _, m3 = model(x3, return_maps=True)
    assert not torch.equal(m3[:, latency:], maps[:, latency:])


def test_htda_without_feedback_equals_the_plain_snn():
    model = _htda(latency=99)       # longer than the run: the map stays 1
    plain = SNN({"input": HTDA_CONFIG["input"], "layers": HTDA_CONFIG["layers"]})
    plain.load_state_dict(model.snn.state_dict())
    x = _spikes((2, 8, 1, 8, 8), seed=4)
    with torch.no_grad():
        out = model(x)
        assert out.sum() > 0
        assert torch.equal(out, plain(x))


def test_htda_loss_terms_and_joint_gradients():
    model = _htda()
    x = _spikes((4, 6, 1, 8, 8), seed=5)
    out, maps = model(x, return_maps=True)
    terms = htda_loss(model, out, maps, torch.tensor([0, 1, 2, 0]), area=0.5, tv=0.25)
    live = maps[:, 1:]
    assert torch.allclose(terms["area"], live.mean())
    assert torch.allclose(terms["loss"], terms["ce"] + 0.5 * live.mean() + 0.25 * tv_term(live))
    terms["loss"].backward()
    assert model.ann[0].weight.grad.abs().sum() > 0           # ANN trained through the SNN
    assert model.snn.layers[0].module.weight.grad.abs().sum() > 0
    m = torch.tensor([[0., 1.], [1., 1.]])
    assert torch.isclose(tv_term(m), torch.tensor(0.5 + 0.5))


def test_htda_checkpoint_round_trip_weights_only(tmp_path):
    model = _htda().eval()
    path = tmp_path / "htda.pt"
    save_checkpoint(model, path)
    assert torch.load(path, weights_only=True)["config"]["model"] == "htda"
    loaded, _ = load_htda_checkpoint(path)
    x = _spikes((2, 6, 1, 8, 8), seed=6)
    with torch.no_grad():
        assert torch.equal(model(x), loaded(x))


def test_htda_config_errors():
    for key, val, match in (("latency", 0, "latency"), ("source", "lif1", "later lif"),
                            ("target", "lif2", "first lif"), ("read", "sum", "read")):
        cfg = {**HTDA_CONFIG, "htda": {**HTDA_CONFIG["htda"], key: val}}
        with pytest.raises(UnsupportedError, match=match):
            HTDA(cfg)


# ---------------------------------------------------------------- data sets
def test_event_timing_is_deterministic_and_timing_coded():
    a = event_timing(n_train=40, n_test=8, seed=7)
    b = event_timing(n_train=40, n_test=8, seed=7)
    for u, v in zip(a, b):
        assert np.array_equal(u, v)
    xtr, ytr, xte, yte = a
    assert xtr.shape == (40, 16, 2, 8, 8) and xte.shape == (8, 16, 2, 8, 8)
    assert xtr.dtype == np.uint8 and set(np.unique(xtr)) <= {0, 1}
    assert np.bincount(ytr, minlength=4).tolist() == [10] * 4 and len(CLASSES) == 4
    assert not np.array_equal(xtr, event_timing(n_train=40, n_test=8, seed=8)[0])
    steps = np.arange(16)
    clean, ycl = event_timing(n_train=40, n_test=0, noise=0.0, seed=7)[:2]
    for x, y in zip(clean, ycl):            # centre of mass in time of channels A and B
        ca, cb = (float((x[:, c].sum((1, 2)) * steps).sum() / x[:, c].sum()) for c in (0, 1))
        if y == 0:
            assert ca < cb
        elif y == 1:
            assert cb < ca
    big = event_timing(n_train=400, n_test=0, seed=1)
    counts = [big[0][big[1] == c].sum((1, 3, 4)).mean(0) for c in range(4)]
    assert max(c.sum() for c in counts) < 1.3 * min(c.sum() for c in counts)


def test_digits_images_shape():
    xtr, ytr, xte, yte = digits_images(steps=4)
    assert xtr.shape[1:] == (4, 1, 8, 8) and len(xtr) + len(xte) == 1797
    assert np.array_equal(xtr[:, 0], xtr[:, 3]) and xtr.max() == 16


def test_load_model_dispatches_and_refuses_code(tmp_path):
    from snncompile.errors import InputFileError
    from snncompile.nn.attention import load_model
    torch.manual_seed(0)
    for model, cls in ((AttentionSNN(ATT_CONFIG), AttentionSNN), (_htda(), HTDA),
                       (SNN({"input": HTDA_CONFIG["input"],
                             "layers": HTDA_CONFIG["layers"]}), SNN)):
        path = tmp_path / f"{cls.__name__}.pt"
        save_checkpoint(model, path)
        assert type(load_model(path)[0]) is cls
    with pytest.raises(InputFileError, match="not an HTDA checkpoint"):
        load_htda_checkpoint(tmp_path / "AttentionSNN.pt")
    evil = tmp_path / "evil.pt"
    torch.save({"format": "snncompile-checkpoint", "version": 1, "config": ATT_CONFIG,
                "state_dict": {}, "extra": np.float64}, evil)   # a global: not plain data
    with pytest.raises(InputFileError, match="refused to load"):
        load_model(evil)


def test_htda_binary_mask_and_learned_initial_map():
    torch.manual_seed(0)
    cfg = {**HTDA_CONFIG, "htda": {**HTDA_CONFIG["htda"], "mask": "binary",
                                    "init": "learned", "init_bias": 1.0, "latency": 2}}
    model = HTDA(cfg)
    with torch.no_grad():
        model.init_logit[..., :4] = -1.0          # left half of the first map closed
        model.snn.layers[0].module.weight.mul_(3.0)
    x = _spikes((2, 6, 1, 8, 8), seed=8)
    out, maps = model(x, return_maps=True)
    assert set(maps.detach().unique().tolist()) <= {0.0, 1.0}
    first = maps[:, :2, 0].detach()
    assert torch.equal(first[..., :4], torch.zeros_like(first[..., :4]))
    assert torch.equal(first[..., 4:], torch.ones_like(first[..., 4:]))
    terms = htda_loss(model, out, maps, torch.tensor([0, 1]), area=1.0, tv=0.0)
    assert torch.isclose(terms["area"], maps.mean())            # every step is trained
    terms["loss"].backward()
    assert model.init_logit.grad.abs().sum() > 0                # straight through
    assert model.ann[0].weight.grad.abs().sum() > 0
    with pytest.raises(UnsupportedError, match="mask 'hard'"):
        HTDA({**cfg, "htda": {**cfg["htda"], "mask": "hard"}})


def test_digits_images_bernoulli():
    xtr, _, xte, _ = digits_images(steps=8, encoding="bernoulli", seed=2)
    assert xtr.shape[1:] == (8, 1, 8, 8) and set(np.unique(xtr)) <= {0, 1}
    assert np.array_equal(xtr, digits_images(steps=8, encoding="bernoulli", seed=2)[0])
    graded = digits_images(steps=8, seed=2)[0]
    assert abs(xtr.mean() - graded.mean() / 16) < 0.01     # rate = value / 16


# ---------------------------------------------------------------- window mode vs the paper
def _released_gain(key, x, w):
    """One released gain re-derived from the paper's definitions (numpy, float64), for an
    (N, T, C, H, W) current; w holds the MLP weights (w1, w2) or the SA kernel."""
    relu = lambda v: np.maximum(v, 0.0)                       # noqa: E731
    sigm = lambda v: 1.0 / (1.0 + np.exp(-v))                 # noqa: E731
    mlp = lambda v: relu(v @ w[0].T) @ w[1].T                 # noqa: E731
    n, t, c, h, wd = x.shape
    if key == "ta":     # T as channels, pooled over (C, H, W): one weight per step
        flat = x.reshape(n, t, -1)
        return sigm(mlp(flat.mean(-1)) + mlp(flat.max(-1))).reshape(n, t, 1, 1, 1)
    if key == "ca":     # pooled over (T, H, W): one weight per channel
        flat = x.transpose(0, 2, 1, 3, 4).reshape(n, c, -1)
        return sigm(mlp(flat.mean(-1)) + mlp(flat.max(-1))).reshape(n, 1, c, 1, 1)
    maps = x.reshape(n, t * c, h, wd)  # sa: mean and max over all T*C maps, 2 -> 1 conv
    both = np.stack([maps.mean(1), maps.max(1)], 1)
    k = w.shape[-1]
    pad = np.pad(both, ((0, 0), (0, 0), (k // 2, k // 2), (k // 2, k // 2)))
    out = np.zeros((n, h, wd))
    for i in range(h):
        for j in range(wd):
            out[:, i, j] = np.einsum("nckl,ckl->n", pad[:, :, i:i + k, j:j + k], w[0])
    return sigm(out).reshape(n, 1, 1, h, wd)


@pytest.mark.parametrize("kind", ["ta", "ca", "sa", "tca", "tsa", "csa", "tcsa"])
def test_window_layer_equals_the_released_definition(kind):
    from snncompile.ir import ATTENTION_PARTS
    from snncompile.nn.attention import AttentionLayer
    torch.manual_seed(3)
    layer = AttentionLayer({"kind": kind, "mode": "window", "t_ratio": 2, "c_ratio": 2,
                            "kernel": 3}, (4, 5, 5), 6, "att").eval()
    x = torch.randn(3, 6, 4, 5, 5)
    with torch.no_grad():
        got = layer(x).double().numpy()
    out = x.double().numpy()
    for key, mod in layer.gate_modules().items():
        w = (mod.conv.weight.detach().double().numpy() if key == "sa" else
             (mod.mlp[0].weight.detach().double().numpy(),
              mod.mlp[2].weight.detach().double().numpy()))
        out = _released_gain(key, out, w) * out
    assert list(layer.gate_modules()) == list(ATTENTION_PARTS[kind])
    assert np.allclose(got, np.maximum(out, 0.0), rtol=1e-5, atol=1e-6)
