"""NIR import/export (snncompile/frontends/nir_import.py, snncompile/export/nir_export.py)
and the norse frontend (snncompile/frontends/norse_import.py)."""
from __future__ import annotations

import numpy as np
import pytest

nir = pytest.importorskip("nir")

from snncompile.errors import InputFileError, UnsupportedError  # noqa: E402
from snncompile.export import export_nir, write_nir  # noqa: E402
from snncompile.frontends.nir_import import SUPPORTED, import_nir  # noqa: E402
from snncompile.ir import (LIF, Conv2d, Dense, Flatten, Graph, Input, Output,  # noqa: E402
                           SumPool2d)
from snncompile.pipeline import compile_model  # noqa: E402
from snncompile.sim import Simulator  # noqa: E402
from snncompile.sim.float_model import run_float  # noqa: E402

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


def test_refusals_explain_why():
    g, w1, _ = _hand_graph()
    g.nodes["fc1"] = nir.Affine(weight=w1, bias=np.full(12, 0.1, np.float32))
    with pytest.raises(UnsupportedError, match="Loihi has no synaptic bias"):
        import_nir(g, dt=DT)
    g, _, _ = _hand_graph()
    g.nodes["lif1"].v_reset = np.full(12, -0.5, np.float32)
    with pytest.raises(UnsupportedError, match=r"v_reset \(-0.5\)"):
        import_nir(g, dt=DT)
    g, _, _ = _hand_graph()
    g.nodes["lif2"] = nir.LI(tau=np.full(3, 1e-2), r=np.ones(3), v_leak=np.zeros(3))
    with pytest.raises(UnsupportedError, match="non-spiking"):
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
    from snncompile.verify import verify
    report = verify(build, xi)
    assert report.equivalent and report.backends["lava"]["spikes"] > 0, report.text()


def test_norse_readout_and_unknown_layers_are_refused():
    import torch

    from snncompile.frontends.norse_import import import_norse

    model = norse.SequentialState(torch.nn.Linear(4, 3, bias=False), norse.LICell())
    with pytest.raises(UnsupportedError, match="non-spiking"):
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

    from snncompile.export.nir_export import write_nir_graph
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
    write_nir_graph(norse.to_nir(mlp, torch.zeros(1, 4)), path)
    with pytest.raises(UnsupportedError, match="synaptic bias"):  # norse: Linear -> Affine
        import_nir(path, dt=DT)
    with torch.no_grad():
        mlp[0].bias.zero_()
    write_nir_graph(norse.to_nir(mlp, torch.zeros(1, 4)), path)
    back = import_nir(path, dt=DT)
    assert back.meta["nir"]["convention"] == "norse"  # detected: CubaLIF with r = w_in = 1
    assert any("norse#411" in q for q in back.meta["nir"]["assumptions"])
    lif = back.nodes(LIF)[0]
    assert (lif.du, lif.dv, lif.vth) == pytest.approx((0.2, 0.1, 10.0), rel=1e-5)


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
    from snncompile.verify import verify
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
    from snncompile.export.nir_export import write_nir
    graph = import_nir(_delayed_graph(np.asarray([0, 1, 3, 0, 2, 5]) * DT), dt=DT)
    write_nir(graph, tmp_path / "d.nir", dt=DT)
    back = import_nir(tmp_path / "d.nir", dt=DT)
    assert np.array_equal(back.node("fc1").delay, graph.node("fc1").delay)
    x = _spikes((3, 12, 6), p=0.5)
    a, b = run_float(graph, x), run_float(back, x)
    assert all(np.array_equal(a[k], b[k]) for k in a)
