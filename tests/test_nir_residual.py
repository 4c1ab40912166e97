"""NIR graphs with residual paths (a DAG, not a chain): a spike source feeds several
synapses and a neuron sums their currents. Imported, the float graph equals a direct numpy
forward-Euler evaluation of the NIR equations; compiled (the balancing pass delays the
short path), the integer reference, the simulator and Lava agree spike for spike."""
from __future__ import annotations

import numpy as np
import pytest

nir = pytest.importorskip("nir")

from snncompile.backends.float_model import run_float  # noqa: E402
from snncompile.backends.reference import reference_run  # noqa: E402
from snncompile.backends.sim import Simulator  # noqa: E402
from snncompile.errors import UnsupportedError  # noqa: E402
from snncompile.formats.nir.read import import_nir  # noqa: E402
from snncompile.pipeline import compile_model  # noqa: E402

DT = 1e-3
TAU = (5e-3, 8e-3)
VTH = (1.0, 0.8)


def _lif(n, tau, vth):
    full = lambda v: np.full(n, v, dtype=np.float32)  # noqa: E731
    return nir.LIF(tau=full(tau), r=full(1.0), v_leak=full(0.0), v_threshold=full(vth),
                   v_reset=full(0.0))


def _residual(seed=0):
    """in -> fc1 -> lif1 -> fc2 -> lif2 -> out, plus the shortcut in -> skip -> lif2."""
    rng = np.random.default_rng(seed)
    w = {"fc1": rng.normal(3, 3, (10, 6)), "fc2": rng.normal(2, 3, (4, 10)),
         "skip": rng.normal(3, 3, (4, 6))}
    w = {k: v.astype(np.float32) for k, v in w.items()}
    nodes = {"in": nir.Input(input_type={"input": np.array([6])}),
             "fc1": nir.Linear(weight=w["fc1"]), "lif1": _lif(10, TAU[0], VTH[0]),
             "fc2": nir.Linear(weight=w["fc2"]), "skip": nir.Linear(weight=w["skip"]),
             "lif2": _lif(4, TAU[1], VTH[1]),
             "out": nir.Output(output_type={"output": np.array([4])})}
    edges = [("in", "fc1"), ("fc1", "lif1"), ("lif1", "fc2"), ("fc2", "lif2"),
             ("in", "skip"), ("skip", "lif2"), ("lif2", "out")]
    return nir.NIRGraph(nodes=nodes, edges=edges, type_check=False), w


def _numpy_euler(w, x):
    """tau dv/dt = -v + I, forward Euler with step DT; spike at v > vth, reset to 0."""
    n, t_len, _ = x.shape
    v1, v2 = np.zeros((n, 10)), np.zeros((n, 4))
    out1, out2 = np.zeros((n, t_len, 10), bool), np.zeros((n, t_len, 4), bool)
    for t in range(t_len):
        v1 += DT / TAU[0] * (-v1 + x[:, t] @ w["fc1"].T.astype(np.float64))
        s1 = v1 > VTH[0]
        v1[s1] = 0.0
        i2 = s1 @ w["fc2"].T.astype(np.float64) + x[:, t] @ w["skip"].T.astype(np.float64)
        v2 += DT / TAU[1] * (-v2 + i2)
        s2 = v2 > VTH[1]
        v2[s2] = 0.0
        out1[:, t], out2[:, t] = s1, s2
    return out1, out2


def _spikes(shape, seed=1, p=0.5):
    return (np.random.default_rng(seed).random(shape) < p).astype(np.int32)


def test_residual_file_imports_and_equals_numpy_euler(tmp_path):
    g, w = _residual()
    path = tmp_path / "res.nir"
    nir.write(path, g)
    graph = import_nir(path, dt=DT, convention="nir")
    assert sorted(graph.inputs("lif2")) == ["fc2", "skip"]
    assert graph.inputs("skip") == ["in"] and graph.inputs("fc1") == ["in"]
    x = _spikes((3, 30, 6))
    got = run_float(graph, x)
    want1, want2 = _numpy_euler(w, x)
    assert want2.any() and not want2.all() and want1.any()
    assert np.array_equal(got["lif1"], want1)
    assert np.array_equal(got["lif2"], want2)


def _compiled(steps=20):
    graph = import_nir(_residual()[0], dt=DT, convention="nir")
    x = _spikes((3, steps, 6))
    return compile_model(graph, "loihi2", calib=x), x


def test_residual_compiles_balanced_and_reference_equals_simulator():
    build, x = _compiled()
    assert build.graph.node("skip").align == 1   # the shortcut waits for the fc1-lif1 path
    ref = reference_run(build.graph, x)
    assert ref["lif2"].any()
    for kernel in ("numpy", "numba"):
        res = Simulator(build.graph, kernel=kernel).run(x)
        for name in ref:
            assert np.array_equal(res.spikes[name], ref[name]), (kernel, name)


@pytest.mark.lava
def test_residual_verifies_with_lava():
    from snncompile.verify.compare import verify
    build, x = _compiled(steps=10)
    report = verify(build, x[:2])
    assert report.equivalent and report.backends["lava"]["spikes"] > 0, report.text()


def test_cycles_and_bad_fan_in_are_refused():
    g, _ = _residual()
    g.edges.append(("lif2", "fc1"))
    on_cycle = r"cycle through \['fc1', 'fc2', 'lif1', 'lif2'\]; "   # not 'out' after it
    with pytest.raises(UnsupportedError, match=on_cycle):
        import_nir(g, dt=DT, convention="nir")
    g, _ = _residual()
    g.edges.append(("fc1", "fc2"))   # a synapse feeding two nodes, and fan-in into fc2
    with pytest.raises(UnsupportedError, match="'fc1' \\(Linear\\) feeds 2 nodes|"
                                               "'fc2' \\(Linear\\) has 2 inputs"):
        import_nir(g, dt=DT, convention="nir")
    g, _ = _residual()
    g.nodes["skip"] = nir.Linear(weight=np.ones((3, 6), np.float32))
    with pytest.raises(UnsupportedError, match="different shapes"):
        import_nir(g, dt=DT, convention="nir")
    nodes = {"in": nir.Input(input_type={"input": np.array([4])}),
             "fc": nir.Linear(weight=np.eye(4, dtype=np.float32)), "lif": _lif(4, 5e-3, 1.0),
             "out": nir.Output(output_type={"output": np.array([4])})}
    edges = [("in", "fc"), ("fc", "lif"), ("in", "lif"), ("lif", "out")]  # in: no synapse
    g = nir.NIRGraph(nodes=nodes, edges=edges, type_check=False)
    with pytest.raises(UnsupportedError, match=r"straight from a Linear.*\['in'\]"):
        import_nir(g, dt=DT, convention="nir")


def test_residual_graph_round_trips_through_export(tmp_path):
    from snncompile.formats.nir import write_nir
    graph = import_nir(_residual()[0], dt=DT, convention="nir")
    path = tmp_path / "back.nir"
    write_nir(graph, path, dt=DT)
    back = import_nir(path, dt=DT)
    assert sorted(back.inputs("lif2")) == ["fc2", "skip"]
    x = _spikes((2, 20, 6), seed=4)
    ref, got = run_float(graph, x), run_float(back, x)
    assert ref["lif2"].any() and all(np.array_equal(ref[k], got[k]) for k in ref)
