"""NIR import/export (snncompile/frontends/nir_import.py, snncompile/export/nir_export.py)
and the norse frontend (snncompile/frontends/norse_import.py)."""
from __future__ import annotations

import numpy as np
import pytest

nir = pytest.importorskip("nir")

from snncompile.errors import InputFileError, UnsupportedError  # noqa: E402
from snncompile.formats.nir import export_nir, write_nir  # noqa: E402
from snncompile.formats.nir.read import SUPPORTED, import_nir  # noqa: E402
from snncompile.ir import (LIF, Conv2d, Dense, Flatten, Graph, Input, Output,  # noqa: E402
                           SumPool2d)
from snncompile.pipeline import compile_model  # noqa: E402
from snncompile.backends.sim import Simulator  # noqa: E402
from snncompile.backends.float_model import run_float  # noqa: E402

DT = 1e-3


def _cuba(n, tau_syn, tau_mem, vth=1.0, r=None, w_in=None, v_leak=0.0):
    """CubaLIF as snnTorch writes it: r = tau_mem/dt, w_in = tau_syn/dt (unit gains)."""
    full = lambda v: np.full(n, v, dtype=np.float32)  # noqa: E731
    return nir.CubaLIF(tau_syn=full(tau_syn), tau_mem=full(tau_mem),
                       r=full(tau_mem / DT if r is None else r),
                       w_in=full(tau_syn / DT if w_in is None else w_in),
                       v_leak=full(v_leak), v_threshold=full(vth), v_reset=full(0.0))


def _hand_graph(seed=0):
    rng = np.random.default_rng(seed)
    w1 = rng.normal(0, 0.6, (12, 6)).astype(np.float32)
    w2 = rng.normal(0, 0.6, (3, 12)).astype(np.float32)
    nodes = {"in": nir.Input(input_type={"input": np.array([6])}),
             "fc1": nir.Linear(weight=w1), "lif1": _cuba(12, 5e-3, 1e-2, vth=1.0),
             "fc2": nir.Linear(weight=w2), "lif2": _cuba(3, 4e-3, 2e-2, vth=0.8),
             "out": nir.Output(output_type={"output": np.array([3])})}
    edges = [("in", "fc1"), ("fc1", "lif1"), ("lif1", "fc2"), ("fc2", "lif2"),
             ("lif2", "out")]
    return nir.NIRGraph(nodes=nodes, edges=edges, type_check=False), w1, w2


def _spikes(shape, seed=1, p=0.4):
    return (np.random.default_rng(seed).random(shape) < p).astype(np.int32)


def test_hand_built_graph_imports_to_expected_float_graph():
    g, w1, w2 = _hand_graph()
    graph = import_nir(g, dt=DT)
    assert graph.order() == ["in", "fc1", "lif1", "fc2", "lif2", "out"]
    assert isinstance(graph.node("in"), Input) and graph.node("in").shape == (6,)
    np.testing.assert_array_equal(graph.node("fc1").weight, w1)
    np.testing.assert_array_equal(graph.node("fc2").weight, w2)
    l1, l2 = graph.node("lif1"), graph.node("lif2")
    assert isinstance(l1, LIF) and isinstance(graph.node("out"), Output)
    assert (l1.du, l1.dv, l2.du, l2.dv) == pytest.approx((0.2, 0.1, 0.25, 0.05))
    assert (l1.vth, l2.vth) == pytest.approx((1.0, 0.8))
    assert not np.any(l1.bias) and not np.any(l2.bias)
    rows = graph.meta["nir_approximation"]
    assert [r["layer"] for r in rows] == ["lif1", "lif2"]
    assert rows[0]["du_decay_abs_error"] == pytest.approx(abs(0.8 - np.exp(-0.2)))
    assert graph.meta["nir_quirks"] == []


def test_hand_built_graph_compiles_and_simulates():
    graph = import_nir(_hand_graph()[0], dt=DT)
    build = compile_model(graph, "loihi2")
    x = _spikes((4, 25, 6))
    result = Simulator(build.graph).run(x)
    assert result.spikes["lif2"].shape == (4, 25, 3)
    assert result.spikes["lif1"].any()


def test_gains_leak_and_affine_bias_map_exactly():
    """r, w_in away from snnTorch's unit gains rescale vth; v_leak becomes a bias; an
    Affine bias before an LIF (no current state) is an exact LIF bias."""
    w = np.eye(2, dtype=np.float32)
    nodes = {"in": nir.Input(input_type={"input": np.array([2])}),
             "a": nir.Affine(weight=w, bias=np.array([0.1, -0.2], np.float32)),
             "lif": nir.LIF(tau=np.full(2, 2e-2), r=np.full(2, 4.0), v_leak=np.full(2, 0.5),
                            v_threshold=np.full(2, 1.0), v_reset=np.zeros(2)),
             "out": nir.Output(output_type={"output": np.array([2])})}
    g = nir.NIRGraph(nodes=nodes, edges=[("in", "a"), ("a", "lif"), ("lif", "out")],
                     type_check=False)
    lif = import_nir(g, dt=DT).node("lif")
    gain = 0.05 * 4.0  # dv * r
    assert (lif.du, lif.dv, lif.vth) == pytest.approx((1.0, 0.05, 1.0 / gain))
    np.testing.assert_allclose(lif.bias, [0.1 + 0.5 / 4.0, -0.2 + 0.5 / 4.0], rtol=1e-6)
    # per-neuron r: one threshold per layer, the ratio moves into the Dense rows
    nodes["lif"].r = np.array([4.0, 8.0])
    graph = import_nir(g, dt=DT)
    lif = graph.node("lif")
    assert lif.vth == pytest.approx(1.0 / gain)
    np.testing.assert_allclose(graph.node("a").weight, [[1, 0], [0, 2]])
    np.testing.assert_allclose(lif.bias, [0.1 + 0.5 / 4.0, 2 * (-0.2 + 0.5 / 8.0)], rtol=1e-6)


def test_affine_bias_into_a_decaying_current_stays_on_the_synapse():
    """Into a CubaLIF with tau_syn > dt the bias is the synapse's (it enters the current
    and decays with it: the chip's bias axon), not the LIF's voltage bias."""
    g, w1, _ = _hand_graph()
    g.nodes["fc1"] = nir.Affine(weight=w1, bias=np.full(12, 0.1, np.float32))
    graph = import_nir(g, dt=DT)
    np.testing.assert_allclose(graph.node("fc1").bias, np.full(12, 0.1), rtol=1e-6)
    assert not np.any(graph.node("lif1").bias) and graph.node("lif1").du < 1
    x = _spikes((4, 30, 6))
    plain = import_nir(_hand_graph()[0], dt=DT)
    assert run_float(graph, x)["lif1"].sum() > run_float(plain, x)["lif1"].sum()


def test_a_bias_through_a_pool_into_a_decaying_current_is_refused():
    rng = np.random.default_rng(0)
    g = nir.NIRGraph(nodes={
        "in": nir.Input(input_type={"input": np.array([1, 4, 4])}),
        "c": nir.Conv2d(input_shape=np.array([4, 4]), weight=rng.normal(0, 1, (2, 1, 3, 3)),
                        stride=1, padding=1, dilation=1, groups=1, bias=np.array([.1, .2])),
        "p": nir.SumPool2d(kernel_size=np.array([2, 2]), stride=np.array([2, 2]),
                           padding=np.array([0, 0])),
        "lif": nir.CubaLIF(tau_syn=np.full((2, 2, 2), 5e-3), tau_mem=np.full((2, 2, 2), 1e-2),
                           r=np.full((2, 2, 2), 10.0), w_in=np.full((2, 2, 2), 5.0),
                           v_leak=np.zeros((2, 2, 2)), v_threshold=np.ones((2, 2, 2)),
                           v_reset=np.zeros((2, 2, 2))),
        "out": nir.Output(output_type={"output": np.array([2, 2, 2])})},
        edges=[("in", "c"), ("c", "p"), ("p", "lif"), ("lif", "out")], type_check=False)
    with pytest.raises(UnsupportedError, match="through a pool or reshape"):
        import_nir(g, dt=DT)


def test_refusals_explain_why():
    g, _, _ = _hand_graph()
    g.nodes["lif1"].v_reset = np.full(12, -0.5, np.float32)
    with pytest.raises(UnsupportedError, match=r"v_reset \(-0.5\)"):
        import_nir(g, dt=DT)
    g, _, _ = _hand_graph()
    g.nodes["lif1"] = nir.LI(tau=np.full(12, 1e-2), r=np.ones(12), v_leak=np.zeros(12))
    with pytest.raises(UnsupportedError, match="non-spiking"):  # only before Output
        import_nir(g, dt=DT)
    g, _, _ = _hand_graph()
    g.edges.append(("lif2", "fc1"))
    with pytest.raises(UnsupportedError, match="feed-forward|branches"):
        import_nir(g, dt=DT)
    g, _, _ = _hand_graph()
    with pytest.raises(UnsupportedError, match="shorter than dt .* --nir-convention"):
        import_nir(g, dt=1e-1, norse_quirks=False)  # tau_mem 10 ms < dt


def test_scale_and_threshold_fold_into_weights():
    nodes = {"in": nir.Input(input_type={"input": np.array([3])}),
             "s1": nir.Scale(scale=np.array([1.0, 2.0, 3.0])),
             "fc": nir.Linear(weight=np.ones((2, 3), np.float32)),
             "s2": nir.Scale(scale=np.array([0.5, 2.0])),
             "th": nir.Threshold(threshold=np.array([0.7, 0.7])),
             "out": nir.Output(output_type={"output": np.array([2])})}
    edges = [("in", "s1"), ("s1", "fc"), ("fc", "s2"), ("s2", "th"), ("th", "out")]
    graph = import_nir(nir.NIRGraph(nodes=nodes, edges=edges, type_check=False))
    np.testing.assert_allclose(graph.node("fc").weight, [[0.5, 1, 1.5], [2, 4, 6]])
    th = graph.node("th")
    assert (th.du, th.dv, th.vth) == (1.0, 1.0, pytest.approx(0.7))


def test_unsupported_node_lists_supported():
    g, _, _ = _hand_graph()
    g.nodes["lif1"] = nir.I(r=np.ones(12))
    with pytest.raises(UnsupportedError, match="node 'lif1' has unsupported type I;") as err:
        import_nir(g)
    assert all(name in str(err.value) for name in SUPPORTED)


def test_file_round_trip_and_bad_files(tmp_path):
    g, w1, _ = _hand_graph()
    path = tmp_path / "net.nir"
    nir.write(path, g)
    graph = import_nir(path, dt=DT)
    np.testing.assert_array_equal(graph.node("fc1").weight, w1)
    assert graph.meta["source"] == "net.nir"
    bad = tmp_path / "bad.nir"
    bad.write_bytes(b"\x89HDF\r\n not really hdf5")
    with pytest.raises(InputFileError, match="bad.nir") as err:
        import_nir(bad)
    assert "\n" not in str(err.value)
    with pytest.raises(InputFileError, match="missing.nir: NIR file not found"):
        import_nir(tmp_path / "missing.nir")


def _conv_graph():
    rng = np.random.default_rng(3)
    return Graph.sequential([
        Input("input", shape=(1, 6, 6)),
        Conv2d("conv", weight=rng.normal(0, 0.5, (3, 1, 3, 3)).astype(np.float32),
               padding=(1, 1)),
        LIF("lif1", shape=(3, 6, 6), du=0.2, dv=0.0, vth=0.5,
            bias=rng.uniform(-0.1, 0.1, (3, 6, 6)).astype(np.float32)),
        SumPool2d("pool", kernel=(2, 2)),
        Flatten("flat"),
        Dense("fc", weight=rng.normal(0, 0.5, (4, 27)).astype(np.float32)),
        LIF("lif2", shape=(4,), du=1.0, dv=0.05, vth=0.7),
        Output("output"),
    ])


def test_export_round_trip(tmp_path):
    graph = _conv_graph()
    path = tmp_path / "conv.nir"
    write_nir(graph, path, dt=DT)
    for back in (import_nir(export_nir(graph, dt=DT), dt=DT), import_nir(path, dt=DT)):
        assert back.order() == graph.order()
        for name in graph.order():
            a, b = graph.node(name), back.node(name)
            assert type(a) is type(b) and graph.shape(name) == back.shape(name)
            if isinstance(a, (Dense, Conv2d)):
                np.testing.assert_array_equal(a.weight, b.weight)
            if isinstance(a, LIF):
                assert (b.du, b.dv, b.vth) == pytest.approx((a.du, a.dv, a.vth), abs=1e-9)
                np.testing.assert_allclose(b.bias, a.bias, rtol=1e-6, atol=1e-9)
    x = _spikes((2, 12, 1, 6, 6))
    ref, got = run_float(graph, x), run_float(back, x)
    assert all(np.array_equal(ref[k], got[k]) for k in ref)


norse = pytest.importorskip("norse.torch")


def _run_norse(model, x):
    """Output spikes of a norse SequentialState over x (B, T, ...), as bool."""
    import torch
    state, outs = None, []
    with torch.no_grad():
        for t in range(x.shape[1]):
            z, state = model(x[:, t], state)
            outs.append(z)
    return torch.stack(outs, 1).numpy() > 0


def test_norse_model_imports_matches_and_compiles():
    import torch

    from snncompile.frontends.norse_import import import_norse

    torch.manual_seed(0)
    model = norse.SequentialState(torch.nn.Linear(8, 16, bias=False), norse.LIFCell(),
                                  torch.nn.Linear(16, 4, bias=False), norse.LIFCell())
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(8.0)
    graph = import_norse(model, torch.zeros(1, 8), dt=DT)
    lif = graph.node(graph.inputs(graph.output_node().name)[0])
    assert (lif.du, lif.dv, lif.vth) == pytest.approx((0.2, 0.1, 10.0), rel=1e-5)
    assert graph.meta["nir"]["convention"] == "norse"
    assert any("norse#411" in q for q in graph.meta["nir"]["assumptions"])
    # the imported float graph spikes exactly like norse
    x = torch.as_tensor(_spikes((3, 20, 8)), dtype=torch.float32)
    ref = _run_norse(model, x)
    got = run_float(graph, x.numpy())[lif.name]
    assert ref.any() and np.array_equal(ref, got)
    xi = x.numpy().astype(np.int64)
    build = compile_model(graph, "loihi2", calib=xi)
    assert Simulator(build.graph).run(xi).spikes[lif.name].shape == (3, 20, 4)
    # and the compiled norse model verifies: reference == simulator == Lava, every spike
    from snncompile.verify.compare import verify
    report = verify(build, xi)
    assert report.equivalent and report.backends["lava"]["spikes"] > 0, report.text()


def test_norse_readout_and_unknown_layers_are_refused():
    import torch

    from snncompile.frontends.norse_import import import_norse

    model = norse.SequentialState(torch.nn.Linear(4, 3, bias=False), norse.LICell(),
                                  torch.nn.Linear(3, 2, bias=False), norse.LIFCell())
    with pytest.raises(UnsupportedError, match="non-spiking"):  # only before Output
        import_norse(model, torch.zeros(1, 4))
    model = norse.SequentialState(torch.nn.Linear(4, 3, bias=False), torch.nn.ReLU())
    with pytest.raises(UnsupportedError, match="ReLU is not supported; supported: Linear"):
        import_norse(model, torch.zeros(1, 4))


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # nirtorch 2.6, via norse.to_nir
def test_norse_conv_iaf_flatten_and_written_file(tmp_path):
    """Conv2d without bias (crashes norse 1.1.0's to_nir), IAFCell, Flatten (dropped by
    norse's to_nir), LIFBoxCell; and a file written from norse's own to_nir, whose 0-d
    parameters need the no-compression fallback and whose tau*dt is auto-detected."""
    import torch

    from snncompile.formats.nir.write import write_nir_graph
    from snncompile.frontends.norse_import import import_norse

    torch.manual_seed(0)
    model = norse.SequentialState(torch.nn.Conv2d(2, 4, 3, bias=False), norse.IAFCell(),
                                  torch.nn.Flatten(), torch.nn.Linear(144, 3, bias=False),
                                  norse.LIFBoxCell())
    with torch.no_grad():
        model[0].weight.mul_(6.0)
        model[3].weight.abs_().mul_(3.0)
    graph = import_norse(model, torch.zeros(1, 2, 8, 8), dt=DT)
    assert graph.node("input").shape == (2, 8, 8)
    x = torch.as_tensor(_spikes((2, 15, 2, 8, 8), p=0.5), dtype=torch.float32)
    ref = _run_norse(model, x)
    last = graph.inputs(graph.output_node().name)[0]
    assert 0 < ref.sum() < ref.size and np.array_equal(ref, run_float(graph, x.numpy())[last])

    mlp = norse.SequentialState(torch.nn.Linear(4, 6), norse.LIFCell())
    path = tmp_path / "norse.nir"
    with torch.no_grad():
        mlp[0].bias.zero_()
    write_nir_graph(norse.to_nir(mlp, torch.zeros(1, 4)), path)
    back = import_nir(path, dt=DT)
    assert back.meta["nir"]["convention"] == "norse"  # detected: CubaLIF with r = w_in = 1
    assert any("norse#411" in q for q in back.meta["nir"]["assumptions"])
    lif = back.nodes(LIF)[0]
    assert (lif.du, lif.dv, lif.vth) == pytest.approx((0.2, 0.1, 10.0), rel=1e-5)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # nirtorch 2.6, via norse.to_nir
def test_norse_linear_with_bias_spikes_like_norse_and_verifies(tmp_path):
    """norse's default Linear has a bias; norse.to_nir writes it as an Affine into a
    CubaLIF whose current decays (tau_syn = 5 ms > dt). The file imports with the bias on
    the synapse, the float graph spikes exactly as norse simulates the model, and the
    compiled network (bias axons) verifies: reference == simulator == Lava."""
    import torch

    from snncompile.formats.nir.write import write_nir_graph
    from snncompile.frontends.norse_import import import_norse
    from snncompile.verify.compare import verify

    torch.manual_seed(0)
    mlp = norse.SequentialState(torch.nn.Linear(6, 8), norse.LIFCell(),
                                torch.nn.Linear(8, 3), norse.LIFCell())
    with torch.no_grad():
        for m in (mlp[0], mlp[2]):
            m.weight.mul_(6.0)
            m.bias.copy_(torch.rand(m.bias.shape) * 3)
    path = tmp_path / "biased.nir"
    write_nir_graph(norse.to_nir(mlp, torch.zeros(1, 6)), path)
    x = torch.as_tensor(_spikes((3, 20, 6)), dtype=torch.float32)
    ref = _run_norse(mlp, x)
    for graph in (import_nir(path, dt=DT), import_norse(mlp, torch.zeros(1, 6), dt=DT)):
        dense = graph.nodes(Dense)
        assert all(d.bias is not None for d in dense) and len(dense) == 2
        assert not any(np.any(lif.bias) for lif in graph.nodes(LIF))
        last = graph.inputs(graph.output_node().name)[0]
        assert ref.any() and np.array_equal(ref, run_float(graph, x.numpy())[last])
    xi = x.numpy().astype(np.int64)
    build = compile_model(graph, "loihi2", calib=xi)
    assert all(build.graph.node(d.name).bias_mant is not None for d in dense)
    report = verify(build, xi)
    assert report.equivalent and report.backends["lava"]["spikes"] > 0, report.text()


def _delayed_graph(delays_s, seed=2):
    """Input -> Delay -> Linear -> CubaLIF -> Delay -> Linear -> CubaLIF -> Output."""
    rng = np.random.default_rng(seed)
    w1 = rng.normal(0, 0.8, (10, 6)).astype(np.float32)
    w2 = rng.normal(0, 0.8, (3, 10)).astype(np.float32)
    nodes = {"in": nir.Input(input_type={"input": np.array([6])}),
             "d1": nir.Delay(delay=np.asarray(delays_s, np.float32)),
             "fc1": nir.Linear(weight=w1), "lif1": _cuba(10, 5e-3, 1e-2, vth=0.8),
             "d2": nir.Delay(delay=np.full(10, 2 * DT, np.float32)),
             "fc2": nir.Linear(weight=w2), "lif2": _cuba(3, 4e-3, 2e-2, vth=0.6),
             "out": nir.Output(output_type={"output": np.array([3])})}
    order = list(nodes)
    return nir.NIRGraph(nodes=nodes, edges=list(zip(order, order[1:])), type_check=False)


def test_nir_delays_become_synaptic_delays_and_verify_with_lava():
    from snncompile.verify.compare import verify
    steps = [0, 1, 3, 0, 2, 5]
    graph = import_nir(_delayed_graph(np.asarray(steps) * DT), dt=DT)
    d1 = graph.node("fc1").delay
    assert d1.shape == (10, 6) and d1[0].tolist() == steps and (d1 == d1[:1]).all()
    assert (graph.node("fc2").delay == 2).all()
    x = _spikes((4, 15, 6), p=0.5)
    # the float model delays: input 5 (delay 5) cannot matter before step 5
    y = x.copy()
    y[:, :, 5] = 0
    a, b = run_float(graph, x)["lif1"], run_float(graph, y)["lif1"]
    assert np.array_equal(a[:, :5], b[:, :5])
    build = compile_model(graph, "loihi2", calib=x)
    assert build.graph.node("fc1").delay is not None
    report = verify(build, x)
    assert report.equivalent and report.backends["lava"]["spikes"] > 0, report.text()


def test_nir_delay_in_the_wrong_place_or_too_long_is_refused():
    g = _delayed_graph(np.full(6, 70 * DT))
    with pytest.raises(UnsupportedError, match="steps; Loihi 2 holds 0 .. 62"):
        import_nir(g, dt=DT)
    nodes = dict(g.nodes)
    nodes["d1"] = nir.Delay(delay=np.zeros(6, np.float32))
    order = ["in", "fc1", "d1", "lif1"]
    bad = nir.NIRGraph(nodes={k: nodes[k] for k in order} | {"out": nodes["out"]},
                       edges=list(zip(order, order[1:])) + [("lif1", "out")],
                       type_check=False)
    with pytest.raises(UnsupportedError, match="Delay is supported only directly in front"):
        import_nir(bad, dt=DT)


def test_nir_delays_round_trip_through_export(tmp_path):
    from snncompile.formats.nir.write import write_nir
    graph = import_nir(_delayed_graph(np.asarray([0, 1, 3, 0, 2, 5]) * DT), dt=DT)
    write_nir(graph, tmp_path / "d.nir", dt=DT)
    back = import_nir(tmp_path / "d.nir", dt=DT)
    assert np.array_equal(back.node("fc1").delay, graph.node("fc1").delay)
    x = _spikes((3, 12, 6), p=0.5)
    a, b = run_float(graph, x), run_float(back, x)
    assert all(np.array_equal(a[k], b[k]) for k in a)


# ------------------------------------------------------------ exporter conventions and dt
def _lif_graph(lif, n=4, in_shape=None):
    """Input -> Linear -> `lif` -> Output, with an optional input type (leading dims)."""
    w = np.eye(n, dtype=np.float32)
    nodes = {"input": nir.Input(input_type={"input": np.array(in_shape or [n])}),
             "0": nir.Linear(weight=w), "1": lif,
             "output": nir.Output(output_type={"output": np.array([n])})}
    return nir.NIRGraph(nodes=nodes, edges=[("input", "0"), ("0", "1"), ("1", "output")],
                        type_check=False)


def _snntorch_lif(beta=0.9, n=4):
    """What snnTorch 1.0.0's export_to_nir writes for Leaky(beta): float32 beta, dt 1e-4."""
    tau = 1e-4 / (1 - np.float32(beta).astype(np.float64))
    return nir.LIF(tau=np.asarray(tau), r=np.asarray(tau / 1e-4), v_leak=np.asarray(0.0),
                   v_threshold=np.asarray(1.0), v_reset=np.asarray(0.0))


def test_snntorch_beta_is_not_mistaken_for_norse():
    """Leaky(beta=0.9): tau = 1e-4/0.1 rounds to just below 1e-3 in float32 arithmetic; the
    old 'every tau below dt = norse' heuristic read that as norse (decay 0.001)."""
    graph = import_nir(_lif_graph(_snntorch_lif(0.9)))
    info = graph.meta["nir"]
    assert info["convention"] == "snntorch" and info["dt"] == pytest.approx(1e-4)
    assert not info["dt_guessed"] and "r = tau / dt" in info["dt_source"]
    assert graph.node("1").dv == pytest.approx(0.1, rel=1e-6)
    assert any("reset_mechanism" in a for a in info["assumptions"])
    with pytest.raises(UnsupportedError, match="contradicts the dt the file records"):
        import_nir(_lif_graph(_snntorch_lif(0.9)), dt=1e-3)
    assert import_nir(_lif_graph(_snntorch_lif(0.9)), dt=1e-4).node("1").dv == \
        pytest.approx(0.1, rel=1e-6)


def test_if_gain_per_convention():
    """IF with r = 1: norse and sinabs add r x per step (gain 1); the NIR equation dv/dt = r I
    gives dt r x; spikingjelly writes r = 1/dt."""
    def if_node(r, shape=()):
        return nir.IF(r=np.full(shape, r, np.float32), v_threshold=np.full(shape, 2.0),
                      v_reset=np.zeros(shape))
    norse_g = import_nir(_lif_graph(if_node(1.0)))      # 0-d, as norse writes
    assert norse_g.meta["nir"]["convention"] == "norse"
    assert norse_g.node("1").vth == pytest.approx(2.0)  # gain 1, not 1e-3
    assert not norse_g.meta["nir"]["dt_guessed"]         # per-step IF: dt is not used
    assert norse_g.meta["nir"]["dt_source"].startswith("not used")
    sinabs_g = import_nir(_lif_graph(if_node(1.0, (4,))))  # per neuron, as sinabs writes
    assert sinabs_g.meta["nir"]["convention"] == "sinabs"
    assert sinabs_g.meta["nir"]["dt_unit"] == "step" and sinabs_g.node("1").vth == 2.0
    with pytest.raises(UnsupportedError, match="--dt .* does not apply: sinabs"):
        import_nir(_lif_graph(if_node(1.0, (4,))), dt=1e-3)
    generic = import_nir(_lif_graph(if_node(4.0, (4,))), dt=1e-3)
    assert generic.meta["nir"]["convention"] == "nir"
    assert generic.node("1").vth == pytest.approx(2.0 / (1e-3 * 4.0))


def test_sinabs_time_constants_in_steps_decay_exactly():
    lif = nir.LIF(tau=np.asarray(8.0, np.float32), r=np.asarray(1.0, np.float32),
                  v_leak=np.asarray(0.0, np.float32), v_threshold=np.asarray(1.0, np.float32))
    nodes = {"input": nir.Input(input_type={"input": np.array([5, 4])}),  # (time, n)
             "0": nir.Affine(weight=np.eye(4, dtype=np.float32), bias=np.zeros(4, np.float32)),
             "1": nir.IF(r=np.ones(4, np.float32), v_threshold=np.ones(4, np.float32)),
             "2": nir.Affine(weight=np.eye(4, dtype=np.float32), bias=np.zeros(4, np.float32)),
             "3": lif, "output": nir.Output(output_type={"output": np.array([4])})}
    order = list(nodes)
    g = nir.NIRGraph(nodes=nodes, edges=list(zip(order, order[1:])), type_check=False)
    graph = import_nir(g)
    assert graph.meta["nir"]["convention"] == "sinabs"
    assert graph.node("input").shape == (4,)  # the leading time dimension is dropped, said
    assert any("leading dimension(s) (5,)" in a for a in graph.meta["nir"]["assumptions"])
    d = -np.expm1(-1 / 8)
    lif = graph.node("3")
    assert lif.dv == pytest.approx(d, rel=1e-6) and lif.vth == pytest.approx(1 / d, rel=1e-6)


def _rockpool_cuba(n, tau_mem, tau_syn, dt):
    """What rockpool 3.1.0's to_nir writes for LIFTorch: r = tau/dt exp(-dt/tau), no w_in."""
    full = lambda v: np.full(n, v, np.float32)  # noqa: E731
    return nir.CubaLIF(tau_mem=full(tau_mem), tau_syn=full(tau_syn),
                       r=full(tau_mem / dt * np.exp(-dt / tau_mem)), v_leak=full(0.0),
                       v_threshold=full(1.0))


def test_rockpool_dt_recovered_and_w_in_from_its_update_rule():
    n = 4
    nodes = {"input": nir.Input(input_type={"input": np.array([1, n])}),
             "0_LinearTorch": nir.Linear(weight=np.eye(n, dtype=np.float32)),
             "1_LIFTorch": _rockpool_cuba(n, 0.02, 0.005, 2e-3),
             "output": nir.Output(output_type={"output": np.array([1, 1, n])})}
    order = list(nodes)
    g = nir.NIRGraph(nodes=nodes, edges=list(zip(order, order[1:])), type_check=False)
    graph = import_nir(g)
    info = graph.meta["nir"]
    assert info["convention"] == "rockpool" and info["dt"] == pytest.approx(2e-3, rel=1e-5)
    lif = graph.node("1_LIFTorch")
    beta, alpha = np.exp(-2e-3 / 0.005), np.exp(-2e-3 / 0.02)
    assert (lif.du, lif.dv, lif.vth) == pytest.approx((1 - beta, 1 - alpha, 1 / beta),
                                                      rel=1e-5)
    assert any("w_in is not written" in a for a in info["assumptions"])
    # rockpool's own update, step by step, against the float graph
    rng = np.random.default_rng(0)
    x = (rng.random((3, 30, n)) < 0.5).astype(np.float32) * 0.6
    isyn, v, ref = np.zeros((3, n)), np.zeros((3, n)), []
    for t in range(30):
        isyn = (isyn + x[:, t]) * beta
        v = alpha * v + isyn
        s = v >= 1.0
        v = np.where(s, v - 1.0, v)  # LIFTorch subtracts its threshold (LIF 'subtract')
        ref.append(s)
    ref = np.stack(ref, 1)
    assert ref.any() and np.array_equal(run_float(graph, x)["1_LIFTorch"], ref)
    # layers that disagree on dt are refused, naming both
    nodes["1_LIFTorch"] = _rockpool_cuba(n, 0.02, 0.005, 2e-3)
    nodes["2_LinearTorch"] = nir.Linear(weight=np.eye(n, dtype=np.float32))
    nodes["3_LIFTorch"] = _rockpool_cuba(n, 0.02, 0.005, 1e-3)
    order = ["input", "0_LinearTorch", "1_LIFTorch", "2_LinearTorch", "3_LIFTorch", "output"]
    g = nir.NIRGraph(nodes={k: nodes[k] for k in order}, edges=list(zip(order, order[1:])),
                     type_check=False)
    with pytest.raises(UnsupportedError, match="imply different dt"):
        import_nir(g)


def test_ambiguous_files_and_bad_parameters_are_one_line_errors():
    lif_r1 = nir.LIF(tau=np.full(4, 2e-5), r=np.ones(4), v_leak=np.zeros(4),
                     v_threshold=np.ones(4))
    with pytest.raises(UnsupportedError, match="cannot tell .* --nir-convention") as err:
        import_nir(_lif_graph(lif_r1))
    assert "\n" not in str(err.value)
    g = import_nir(_lif_graph(lif_r1), dt=1e-3, convention="norse")  # tau * dt = 2e-5
    assert g.node("1").dv == pytest.approx(0.05) and g.meta["nir"]["convention_source"] \
        .startswith("named by the caller")
    with pytest.raises(UnsupportedError, match="convention 'snntorch2' is unknown"):
        import_nir(_lif_graph(lif_r1), convention="snntorch2")
    nan = nir.LIF(tau=np.full(4, 1e-2), r=np.array([10.0, np.nan, 10, 10]),
                  v_leak=np.zeros(4), v_threshold=np.ones(4))
    with pytest.raises(UnsupportedError, match=r"r holds 1 NaN or infinite value\(s\)"):
        import_nir(_lif_graph(nan), dt=1e-3)
    g = _lif_graph(_cuba(4, 5e-3, 1e-2))
    g.nodes["0"].weight[1, 2] = np.nan
    with pytest.raises(UnsupportedError, match=r"node '0' \(Linear\): weight holds 1 NaN"):
        import_nir(g, dt=DT)
    if_as_lif = nir.LIF(tau=np.full(4, np.inf), r=np.ones(4), v_leak=np.zeros(4),
                        v_threshold=np.ones(4))
    with pytest.raises(UnsupportedError, match="tau is infinite.*nir.IF"):
        import_nir(_lif_graph(if_as_lif), dt=1e-3, convention="nir")
    # batch and time dimensions in front of the input type: dropped and said
    cuba = _cuba(4, 5e-3, 1e-2)
    graph = import_nir(_lif_graph(cuba, in_shape=[1, 5, 4]), dt=DT)
    assert graph.node("input").shape == (4,)
    assert any("(1, 5)" in a for a in graph.meta["nir"]["assumptions"])


def test_guessed_dt_is_said_and_cli_flags_reach_the_importer(tmp_path, capsys):
    from snncompile.cli import main
    g, _, _ = _hand_graph()        # unit gains at 1 ms, no metadata: not an exporter we know
    path = tmp_path / "h.nir"
    nir.write(path, g)
    graph = import_nir(path)
    info = graph.meta["nir"]
    assert info["convention"] == "nir" and info["dt_guessed"] and info["dt"] == 1e-3
    assert "does not record its time step" in info["warnings"][0]
    calib = tmp_path / "c.npz"
    np.savez(calib, inputs=_spikes((8, 10, 6)))
    assert main(["compile", str(path), "--calib", str(calib), "-o", str(tmp_path / "b"),
                 "--quiet"]) == 0
    err = capsys.readouterr().err
    assert err.count("snncompile: warning:") == 1 and "assumed dt = 0.001 s" in err
    assert "GUESSED" in (tmp_path / "b" / "report.md").read_text()
    assert main(["compile", str(path), "--calib", str(calib), "-o", str(tmp_path / "b2"),
                 "--quiet", "--dt", "1e-3"]) == 0
    assert "warning" not in capsys.readouterr().err
    report = (tmp_path / "b2" / "report.json").read_text()
    assert '"dt_source": "given by the caller: --dt"' in report
    # --dt on a format that has no use for it is a one-line user error
    ckpt = tmp_path / "m.pt"
    ckpt.write_bytes(b"")
    assert main(["compile", str(ckpt), "--dt", "1e-3", "--calib", str(calib), "-o",
                 str(tmp_path / "x")]) == 2
    assert "apply only to .nir files" in capsys.readouterr().err
