"""Conv1d (issue 12): the float `Conv1d` node equals PyTorch's Conv1d (the training layer,
dilation included) to float precision, quantisation lowers it to `FxConv1d` (a height-1
FxConv2d on the (C, 1, L) view, shapes kept (C, L)), and the integer reference, the
simulator (numpy and numba) and Lava agree spike for spike on random Conv1d graphs."""
import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st

from hypothesis_profile import examples

from snncompile.backends.float_model import run_float
from snncompile.backends.reference import reference_run
from snncompile.backends.sim import Simulator
from snncompile.errors import GraphError, UnsupportedError
from snncompile.frontends.torch_checkpoint import graph_from_model
from snncompile.ir import Conv1d, FxConv1d, FxLIF, Graph, Input, Output
from snncompile.ir.graph import graphs_equal
from snncompile.nn import SNN, save_checkpoint
from snncompile.pipeline import compile_model

from strategies import assert_lava_equals_simulator, conv1d_networks

LIF = {"type": "lif", "du": 0.3, "dv": 0.2, "vth": 1.0}


def _cfg(c, length, layers):
    return {"input": {"shape": [c, length]},
            "layers": layers + [{"type": "flatten"}, {"type": "dense", "out": 4},
                                dict(LIF, name="out")]}


def _model(cfg, seed, gain=2.0):
    torch.manual_seed(seed)
    model = SNN(cfg)
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(gain)
    return model


@st.composite
def conv1d_layers(draw):
    """(C, L, layers): one or two random conv1d + lif layers that fit the input."""
    c, length = draw(st.integers(1, 4)), draw(st.integers(4, 24))
    layers, ch, n = [], c, length
    for _ in range(draw(st.integers(1, 2))):
        k, d = draw(st.integers(1, 4)), draw(st.integers(1, 3))
        s, p = draw(st.integers(1, 3)), draw(st.integers(0, 2))
        g = draw(st.sampled_from([g for g in (1, 2, 3) if ch % g == 0]))
        out = g * draw(st.integers(1, 3))
        n_out = (n + 2 * p - d * (k - 1) - 1) // s + 1
        if n_out < 1:
            break
        layers += [{"type": "conv1d", "out": out, "kernel": k, "stride": s, "padding": p,
                    "dilation": d, "groups": g, "bias": draw(st.booleans())}, dict(LIF)]
        ch, n = out, n_out
    if not layers:
        layers = [{"type": "conv1d", "out": 2, "kernel": 1}, dict(LIF)]
    return c, length, layers


@settings(max_examples=examples(25), deadline=None)
@given(conv1d_layers(), st.integers(0, 2**16))
def test_float_conv1d_equals_torch_conv1d(case, seed):
    """Per conv1d layer, the float stage's rule computes the training layer's nn.Conv1d
    output on the same input (random C, L, K, stride, padding, dilation, groups) to float
    precision, and the float graph's spikes equal the training model's."""
    from snncompile.backends.float_model import FLOAT
    c, length, layers = case
    model = _model(_cfg(c, length, layers), seed)
    graph = graph_from_model(model)
    x = (np.random.default_rng(seed).random((2, 5, c, length)) < 0.5).astype(np.float32)
    with torch.no_grad():
        want = model(torch.as_tensor(x)).numpy() > 0
        h, checked = torch.as_tensor(x), 0
        for name, layer in zip(model.names, model.layers):
            y = layer(h)
            if name.startswith("conv1d"):
                node = graph.node(name)
                ours = FLOAT.rule(node)(node, [h], None)
                assert isinstance(node, Conv1d) and graph.shape(name) == tuple(y.shape[2:])
                torch.testing.assert_close(ours, y, rtol=1e-5, atol=1e-5)
                checked += 1
            h = y
    assert checked == len(layers) // 2
    assert np.array_equal(run_float(graph, x)["out"], want)


def test_dilated_kernel_is_the_sparse_dense_kernel():
    w = np.arange(2 * 1 * 3, dtype=np.float32).reshape(2, 1, 3) + 1
    node = Conv1d("c", weight=w, dilation=3, padding=2)
    dense = node.dense_kernel()
    assert dense.shape == (2, 1, 7) and np.array_equal(dense[:, :, ::3], w)
    assert np.count_nonzero(dense) == w.size
    x = torch.randn(3, 1, 11)
    a = torch.nn.functional.conv1d(x, torch.as_tensor(w), padding=2, dilation=3)
    b = torch.nn.functional.conv1d(x, torch.as_tensor(dense), padding=2)
    torch.testing.assert_close(a, b)
    assert node.out_shape([(1, 11)]) == (2, 9)


def test_shapes_are_checked_in_one_line():
    with pytest.raises(GraphError, match=r"c: Conv1d expects a \(C, L\) input, got \(1, 4, 4\)"):
        Conv1d("c", weight=np.ones((2, 1, 3))).out_shape([(1, 4, 4)])
    with pytest.raises(GraphError, match="c: Conv1d output would be empty"):
        Conv1d("c", weight=np.ones((2, 1, 5)), dilation=2).out_shape([(1, 6)])
    with pytest.raises(GraphError, match="FxConv1d needs weight"):
        FxConv1d("f", weight=np.ones((2, 1, 3, 3), np.int32))
    with pytest.raises(UnsupportedError, match="conv1d expects a 2-d input"):
        SNN({"input": {"shape": [8]}, "layers": [{"type": "conv1d", "out": 2, "kernel": 3},
                                                 LIF]})


def test_nodes_table_lists_conv1d_stages():
    from snncompile.backends.lava.lower import LOWER
    from snncompile.formats.netx.write import NETX_EXPORT
    from snncompile.ir.registry import support_matrix
    m = support_matrix()
    assert "Conv1d" in m["float evaluation"] and "Conv1d" in m["quantisation"]
    assert "Conv1d" in m["NIR export"] and "FxConv1d" in m["simulator"]
    assert LOWER.get(FxConv1d) is not LOWER.get(FxConv1d.__mro__[1])   # its own lowering
    assert NETX_EXPORT.supports(FxConv1d)            # its own writer: the (C, 1, L) image
    assert NETX_EXPORT.get(FxConv1d) is not NETX_EXPORT.get(FxConv1d.__mro__[1])


def _reference_equals_simulator(graph, x):
    ref = reference_run(graph, x)
    for kernel in ("numpy", "numba"):
        res = Simulator(graph, kernel=kernel).run(x, batch_size=2)
        for name in ref:
            assert np.array_equal(res.spikes[name], ref[name]), (kernel, name)


@settings(max_examples=examples(60), deadline=None)
@given(conv1d_networks())
def test_simulator_equals_reference_on_random_conv1d_graphs(case):
    _reference_equals_simulator(*case)


@settings(max_examples=examples(40), deadline=None)
@given(conv1d_networks(synapse_bias=True))
def test_simulator_equals_reference_on_random_biased_conv1d_graphs(case):
    """Bias axons on the Conv1d synapses (per output channel, every step, into the
    neurons' current) and on the readout's Dense: reference == numpy == kernels."""
    _reference_equals_simulator(*case)


def test_the_conv1d_bias_changes_what_the_networks_do():
    """The drawn Conv1d biases are not inert: without them some networks spike
    differently (else the property tests with bias would test nothing new)."""
    import dataclasses

    from hypothesis import find

    def differs(case):
        graph, x = case
        convs = [n for n in graph.order() if isinstance(graph.node(n), FxConv1d)
                 and graph.node(n).bias_mant is not None]
        if not convs:
            return False
        plain = Graph.sequential([dataclasses.replace(graph.node(n), bias_mant=None)
                                  if n in convs else graph.node(n) for n in graph.order()])
        a, b = reference_run(graph, x), reference_run(plain, x)
        return any(not np.array_equal(a[n], b[n]) for n in a)
    find(conv1d_networks(synapse_bias=True), differs, settings=settings(max_examples=50))


def _hand_graph():
    """Input (2, 5) -> asymmetric Conv1d (k 2, s 1, p 1) -> LIF (3, 6): every output
    position reads a different pair of inputs, so a transposed layout would differ."""
    w = np.array([[[0, 60]], [[60, 0]], [[40, 40]]], np.int32).reshape(3, 1, 1, 2)
    w = np.concatenate([w, -w // 2], axis=1)      # (3, 2, 1, 2): channel 1 inhibits
    g = Graph()
    g.add(Input("in", shape=(2, 5)))
    g.add(FxConv1d("conv", weight=w, stride=(1, 1), padding=(0, 1)), ["in"])
    g.add(FxLIF("lif", shape=(3, 6), du=4095, dv=4095, vth=50), ["conv"])
    g.add(Output("out"), ["lif"])
    return g


def test_hand_conv1d_by_hand():
    """Channel 0 spikes at position 0 only: conv output channel 0 (tap 1) fires at
    position 0, channel 1 (tap 0) at position 1, channel 2 (40) at neither."""
    g = _hand_graph()
    x = np.zeros((1, 2, 2, 5), np.int64)
    x[0, 0, 0, 0] = 1
    want = np.zeros((1, 2, 3, 6), bool)
    want[0, 0, 0, 0] = want[0, 0, 1, 1] = True
    assert np.array_equal(reference_run(g, x)["lif"], want)
    for kernel in ("numpy", "numba"):
        assert np.array_equal(Simulator(g, kernel=kernel).run(x).spikes["lif"], want)


@pytest.mark.lava
def test_lava_conv1d_by_hand():
    g = _hand_graph()
    x = (np.random.default_rng(0).random((2, 4, 2, 5)) < 0.5).astype(np.int64)
    sim = Simulator(g).run(x).spikes["lif"]
    assert sim.any() and not sim.all()
    assert_lava_equals_simulator((g, x))


@pytest.mark.lava
@settings(max_examples=examples(5), deadline=None, database=None)
@given(conv1d_networks(max_len=8))
def test_lava_equals_simulator_on_random_conv1d_graphs(case):
    assert_lava_equals_simulator(case)


@pytest.mark.lava
@settings(max_examples=examples(4), deadline=None, database=None)
@given(conv1d_networks(max_len=8, synapse_bias=True))
def test_lava_equals_simulator_on_random_biased_conv1d_graphs(case):
    assert_lava_equals_simulator(case)


def _compiled(cfg, seed, tmp_path, shape, gain=2.0):
    path = tmp_path / "c1.pt"
    model = _model(cfg, seed, gain)
    save_checkpoint(model, path)
    rng = np.random.default_rng(seed)
    calib = (rng.random((16, 8) + shape) < 0.4).astype(np.int64)
    x = (rng.random((2, 6) + shape) < 0.4).astype(np.int64)
    return compile_model(path, "loihi2", calib=calib), x, path


CFG = _cfg(3, 16, [{"type": "conv1d", "out": 4, "kernel": 3, "stride": 2, "padding": 1,
                    "dilation": 2}, dict(LIF),
                   {"type": "conv1d", "out": 4, "kernel": 2, "groups": 2}, dict(LIF)])


BIAS_CFG = _cfg(3, 16, [{"type": "conv1d", "out": 4, "kernel": 3, "stride": 2, "padding": 1,
                         "bias": True}, dict(LIF, du=0.4),
                        {"type": "conv1d", "out": 4, "kernel": 2, "groups": 2, "bias": True},
                        dict(LIF)])


def test_checkpoint_compiles_and_keeps_1d_shapes(tmp_path):
    build, x, _ = _compiled(CFG, 0, tmp_path, (3, 16))
    g = build.graph
    assert isinstance(g.node("conv1d1"), FxConv1d) and g.shape("lif1") == (4, 7)
    assert g.node("conv1d1").weight.shape == (4, 3, 1, 5)    # dilation 2 made dense
    assert g.shape("input") == (3, 16)
    row = next([c.strip() for c in line.split("|")] for line in build.report_md.splitlines()
               if line.startswith("| conv1d1 "))
    # 4 x 7 outputs x 3 channels x 5 taps (the dilated kernel: zeros included); non-zero:
    # the 4 x 3 x 3 trained weights at 7 positions
    assert row[3] == "4x7" and row[5:8] == ["420", "252", "60"], row
    ref = reference_run(g, x)
    assert sum(int(v.sum()) for v in ref.values()) > 0
    for kernel in ("numpy", "numba"):
        res = Simulator(g, kernel=kernel).run(x)
        assert all(np.array_equal(res.spikes[k], ref[k]) for k in ref), kernel
    # the build round-trips (FxConv1d serialised by its class name)
    from snncompile.build import Build
    build.save(tmp_path / "b")
    assert graphs_equal(Build.load(tmp_path / "b").graph, g)


def _netx_graph(bias: bool = False):
    """Input (3, 16) -> Conv1d (k 3, s 2, p 1) -> LIF -> grouped Conv1d -> LIF -> Flatten
    -> Dense (weight_exp 0, netx-exact) -> LIF, random mantissas and LIF biases that netx
    can hold (multiples of 2**6); `bias`: a bias axon on the first conv."""
    from snncompile.ir import Flatten, FxDense
    rng = np.random.default_rng(5)
    g = Graph()
    g.add(Input("in", shape=(3, 16)))
    g.add(FxConv1d("c1", weight=rng.integers(-60, 120, (4, 3, 1, 3)), stride=(1, 2),
                   padding=(0, 1), bias_mant=np.array([20, -4, 8, 0]) if bias else None),
          ["in"])
    g.add(FxLIF("l1", shape=(4, 8), du=800, dv=300, vth=60,
                bias_mant=np.repeat(rng.integers(0, 3, (4, 1)), 8, 1) * 64), ["c1"])
    g.add(FxConv1d("c2", weight=rng.integers(-80, 127, (4, 2, 1, 2)), groups=2), ["l1"])
    g.add(FxLIF("l2", shape=(4, 7), du=4095, dv=100, vth=40), ["c2"])
    g.add(Flatten("flat"), ["l2"])
    g.add(FxDense("fc", weight=rng.integers(-100, 128, (5, 28)) * 2), ["flat"])
    g.add(FxLIF("l3", shape=(5,), du=2000, dv=200, vth=50), ["fc"])
    g.add(Output("out"), ["l3"])
    x = (rng.random((2, 8, 3, 16)) < 0.4).astype(np.int64)
    return g, x


def test_netx_export_writes_conv1d_as_a_height_1_conv(tmp_path):
    """export --format netx of a Conv1d build: netx's conv layers on the (C, 1, L) image;
    read back (an FxConv2d graph on (C, 1, L)) it spikes as the build does, and lava-dl's
    netx in Lava runs the file to the same spikes (marked lava below). A synapse bias has
    no netx form and is refused in one line, as for Conv2d."""
    from snncompile.formats.netx.read import import_netx
    from snncompile.formats.netx.write import export_netx
    graph, x = _netx_graph()
    path = export_netx(graph, tmp_path / "c.net")
    back = import_netx(path)
    assert back.input_node().shape == (3, 1, 16)
    convs = [n for n in back.order() if type(back.node(n)).__name__ == "FxConv2d"]
    assert len(convs) == 2 and back.shape(convs[0]) == (4, 1, 8)
    a = Simulator(graph).run(x)
    b = Simulator(back).run(x.reshape(x.shape[:3] + (1, 16)))
    lifs = [n for n in back.order() if isinstance(back.node(n), FxLIF)]
    assert len(lifs) == 3 and all(a.spikes[m].any() for m in ("l1", "l2", "l3"))
    for m, t in zip(("l1", "l2", "l3"), lifs):
        np.testing.assert_array_equal(a.spikes[m].reshape(b.spikes[t].shape), b.spikes[t])
    with pytest.raises(UnsupportedError, match="c1: netx has no synapse bias") as exc:
        export_netx(_netx_graph(bias=True)[0], tmp_path / "x.net")
    assert "\n" not in str(exc.value) and not (tmp_path / "x.net").exists()


@pytest.mark.lava
def test_netx_export_of_conv1d_runs_in_lava_dl(tmp_path):
    from snncompile.formats.netx.read import import_netx
    from snncompile.formats.netx.run_lava import run_netx
    from snncompile.formats.netx.write import export_netx
    graph, x = _netx_graph()
    path = export_netx(graph, tmp_path / "c.net")
    back = import_netx(path)
    xi = x[0].reshape((x.shape[1], 3, 1, 16))
    ours = Simulator(back).run(xi[None]).spikes
    lava = run_netx(path, back, xi)
    assert sum(int(v.sum()) for v in lava.values()) > 0
    for name, spikes in lava.items():
        np.testing.assert_array_equal(ours[name][0], spikes, err_msg=name)


@pytest.mark.parametrize("cfg", [CFG, BIAS_CFG], ids=["plain", "bias"])
def test_nir_export_writes_conv1d_and_reads_back(tmp_path, cfg):
    """The float graph as NIR (CubaLIF neurons, decaying currents) and back: the same
    weights, geometry and Conv1d bias (into the current: kept on the synapse), and the
    same float spikes."""
    import nir
    from snncompile.formats.nir.read import import_nir
    from snncompile.formats.nir.write import export_nir
    build, x, _ = _compiled(cfg, 1, tmp_path, (3, 16))
    g = export_nir(build.float_graph)
    node = g.nodes["conv1d1"]
    assert isinstance(node, nir.Conv1d) and node.stride == 2
    assert node.dilation == (2 if cfg is CFG else 1)
    assert node.input_shape == 16 and node.weight.shape == (4, 3, 3)
    nir.write(tmp_path / "m.nir", g)
    back = import_nir(tmp_path / "m.nir")
    a, b = back.node("conv1d1"), build.float_graph.node("conv1d1")
    assert isinstance(a, Conv1d) and (a.stride, a.padding) == (2, 1)
    assert a.dilation == b.dilation == (2 if cfg is CFG else 1)
    assert np.array_equal(a.weight, b.weight)
    assert (a.bias is None) == (b.bias is None) == (cfg is CFG)
    if b.bias is not None:
        np.testing.assert_allclose(a.bias, b.bias, rtol=1e-6)
        assert compile_model(tmp_path / "m.nir", "loihi2", calib=x).graph.node(
            "conv1d1").bias_mant is not None
    xf = x.astype(np.float32)
    fa, fb = run_float(back, xf), run_float(build.float_graph, xf)
    assert all(np.array_equal(fa[k], fb[k]) for k in fb)


RES_CFG = _cfg(2, 10, [{"type": "conv1d", "out": 3, "kernel": 3, "padding": 1}, dict(LIF),
                       {"type": "residual", "name": "res",
                        "body": [{"type": "conv1d", "out": 3, "kernel": 3, "padding": 1},
                                 dict(LIF, name="res.lif"),
                                 {"type": "conv1d", "out": 3, "kernel": 3, "padding": 1}]},
                       dict(LIF, name="after")])


def test_conv1d_residual_with_identity_shortcut_is_balanced_by_delay_neurons(tmp_path):
    """An identity shortcut on (C, L) spikes is a depthwise Conv1d of ones; Conv has no
    synaptic delays, so balancing puts one relay stage (FxConv1d identity + delay
    neurons) in front of it, and reference == simulator on the deployed graph."""
    model = _model(RES_CFG, 4, gain=1.5)
    x = (np.random.default_rng(4).random((2, 6, 2, 10)) < 0.4).astype(np.float32)
    with torch.no_grad():
        want = model(torch.as_tensor(x)).numpy() > 0
    assert np.array_equal(run_float(graph_from_model(model), x)["out"], want)
    build, xs, _ = _compiled(RES_CFG, 4, tmp_path, (2, 10), gain=1.5)
    g = build.graph
    assert [d["synapse"] for d in build.report["path_delays"]] == ["res.shortcut"]
    relay = g.node("res.shortcut.relay0.syn")
    assert isinstance(relay, FxConv1d) and g.shape("res.shortcut.relay0") == (3, 10)
    ref = reference_run(g, xs)
    assert ref["after"].any()
    for kernel in ("numpy", "numba"):
        res = Simulator(g, kernel=kernel).run(xs)
        assert all(np.array_equal(res.spikes[k], ref[k]) for k in ref), kernel


def test_a_conv1d_bias_compiles_as_a_bias_axon_and_is_faithful(tmp_path):
    """conv1d layers with 'bias': true: the float graph carries the trained bias, the
    build a bias axon per output channel (FxConv1d.bias_mant), whose exact value the
    reference and simulator add at every step; the compiled spike counts stay close to
    the float model's, and the bias matters (zeroed, the spikes change)."""
    import dataclasses
    model = _model(BIAS_CFG, 3)
    with torch.no_grad():
        model.layers[0].module.bias.fill_(0.6)      # a clear drive into a decaying current
    path = tmp_path / "b.pt"
    save_checkpoint(model, path)
    graph = graph_from_model(model)
    assert np.allclose(graph.node("conv1d1").bias, 0.6)
    rng = np.random.default_rng(3)
    calib = (rng.random((16, 8, 3, 16)) < 0.3).astype(np.int64)
    x = (rng.random((4, 8, 3, 16)) < 0.3).astype(np.int64)
    build = compile_model(path, "loihi2", calib=calib)
    g = build.graph
    fx = g.node("conv1d1")
    assert isinstance(fx, FxConv1d) and fx.bias_mant is not None and fx.bias_mant.shape == (4,)
    ref = reference_run(g, x)
    for kernel in ("numpy", "numba"):
        res = Simulator(g, kernel=kernel).run(x)
        assert all(np.array_equal(res.spikes[k], ref[k]) for k in ref), kernel
    flt = run_float(graph, x.astype(np.float32))
    for k in ("lif1", "lif2"):
        a, b = int(flt[k].sum()), int(ref[k].sum())
        assert a > 0 and abs(a - b) <= 0.1 * a, (k, a, b)
    plain = Graph.sequential([dataclasses.replace(g.node(n), bias_mant=None)
                              if isinstance(g.node(n), FxConv1d) else g.node(n)
                              for n in g.order()])
    assert not np.array_equal(reference_run(plain, x)["lif1"], ref["lif1"])


@pytest.mark.lava
def test_compiled_conv1d_checkpoints_reference_equals_simulator_and_lava(tmp_path):
    from snncompile.backends.lava.run import run_lava
    for i, (cfg, shape) in enumerate(((CFG, (3, 16)), (RES_CFG, (2, 10)),
                                      (BIAS_CFG, (3, 16)))):
        build, x, _ = _compiled(cfg, i, tmp_path, shape, gain=2.0 if i != 1 else 1.5)
        ref = reference_run(build.graph, x)
        sim = Simulator(build.graph).run(x)
        lava = run_lava(build.graph, x)
        assert sum(int(v.sum()) for v in ref.values()) > 0
        for k in ref:
            assert np.array_equal(sim.spikes[k], ref[k]) and \
                np.array_equal(lava.spikes[k], ref[k]), (i, k)


def _nir_conv1d_graph(**conv):
    import nir
    w = np.random.default_rng(0).normal(size=(3, 2, 3)).astype(np.float32)
    nodes = {"in": nir.Input(input_type={"input": np.array([2, 9])}),
             "c": nir.Conv1d(input_shape=9, weight=w, bias=np.zeros(3, np.float32),
                             **{"stride": 1, "padding": 0, "dilation": 1, "groups": 1,
                                **conv}),
             "n": nir.IF(r=np.ones((3, 9)), v_threshold=np.ones((3, 9))),
             "out": nir.Output(output_type={"output": np.array([3, 9])})}
    return nir.NIRGraph(nodes=nodes, edges=[("in", "c"), ("c", "n"), ("n", "out")],
                        type_check=False)


def test_nir_conv1d_same_padding_and_its_refusals():
    from snncompile.formats.nir.read import import_nir
    g = import_nir(_nir_conv1d_graph(padding="same", dilation=2), dt=1e-3, convention="nir")
    node = g.node("c")
    assert (node.padding, node.dilation) == (2, 2) and g.shape("c") == (3, 9)
    with pytest.raises(UnsupportedError, match="NIR node 'c' \\(Conv1d\\): padding 'same' "
                       "needs stride 1") as exc:
        import_nir(_nir_conv1d_graph(padding="same", stride=2), dt=1e-3, convention="nir")
    assert "\n" not in str(exc.value)
    with pytest.raises(UnsupportedError, match=r"NIR node 'c' \(Conv1d\): stride \(\[1 2\]\) "
                       "must be one integer"):
        import_nir(_nir_conv1d_graph(stride=np.array([1, 2])), dt=1e-3, convention="nir")


def test_a_huge_dilation_is_refused_before_the_dense_kernel_is_built():
    """12,288 weights in the file, dilation 65,535: the dense kernel would hold 537M."""
    import nir
    from snncompile.formats.nir.read import import_nir
    g = _nir_conv1d_graph(dilation=65535)
    g.nodes["c"].weight = np.ones((64, 64, 3), np.float32)
    with pytest.raises(UnsupportedError, match=r"dilation 65535 makes a dense kernel of "
                       r"64x64x131071 weights \(more than 268435456\)"):
        import_nir(g, dt=1e-3, convention="nir")
    assert isinstance(g.nodes["c"], nir.Conv1d)
    with pytest.raises(UnsupportedError, match=r"conv1d1: 256x2x1048577 \(dilated\) kernel"):
        SNN({"input": {"shape": [2, 1 << 21]},
             "layers": [{"type": "conv1d", "out": 256, "kernel": 2, "dilation": 1 << 20},
                        LIF]})
