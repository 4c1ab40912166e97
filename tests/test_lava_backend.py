"""Lava backend (snncompile/backends/lava_backend.py) against an independent numpy replica of
Lava's bit-accurate arithmetic (/work/shared/loihi-fixed-point.md), in local time."""
from __future__ import annotations

import importlib.util
import multiprocessing
import os
import subprocess
import sys

import numpy as np
import pytest

from snncompile.errors import BackendError, InputFileError, UnsupportedError
from snncompile.ir.graph import Graph
from snncompile.ir.nodes import (LIF, Dense, Flatten, FxConv2d, FxDense, FxLIF, Input,
                                 Output)

pytestmark = [pytest.mark.lava,
              pytest.mark.skipif(importlib.util.find_spec("lava") is None,
                                 reason="lava-nc is not installed")]


# ------------------------------------------------------------------ numpy replica
def _prep_weights(w, sign_mode, nbits):
    w = np.asarray(w, dtype=np.int64)
    lo, hi = {"mixed": (-256, 255), "excitatory": (0, 255), "inhibitory": (-255, 0)}[sign_mode]
    w = np.clip(w, lo, hi)
    nt = 8 - nbits + (sign_mode == "mixed")
    return (w >> nt) << nt


def _dense(node, s):
    w = _prep_weights(node.weight, node.sign_mode, node.num_weight_bits)
    acc = w @ s.astype(np.int64) if node.num_message_bits > 0 else w @ (s != 0)
    e = node.weight_exp
    return acc << e if e > 0 else acc >> -e


def _conv(node, s):
    x = s.astype(np.int64) if node.num_message_bits > 0 else (s != 0).astype(np.int64)
    (ph, pw), (sh, sw) = node.padding, node.stride
    x = np.pad(x, ((0, 0), (ph, ph), (pw, pw)))
    w = np.asarray(node.weight, dtype=np.int64)  # OIHW cross-correlation
    o, _, kh, kw = w.shape
    oh, ow = (x.shape[1] - kh) // sh + 1, (x.shape[2] - kw) // sw + 1
    out = np.zeros((o, oh, ow), dtype=np.int64)
    for i in range(oh):
        for j in range(ow):
            patch = x[:, i * sh:i * sh + kh, j * sw:j * sw + kw]
            out[:, i, j] = np.tensordot(w, patch, axes=([1, 2, 3], [0, 1, 2]))
    return (out + 2 ** 23) % 2 ** 24 - 2 ** 23  # wrap to 24 bits


def _decay(x, keep):
    p = x.astype(np.int64) * keep
    return np.sign(p) * (np.abs(p) >> 12)


def _lif_step(node, st, a):
    u = _decay(st["u"], 4096 - node.du - 1) + (a.astype(np.int64) << 6)
    u = np.where(u > 2 ** 23, u - 2 ** 24, u)
    u = np.where(u <= -2 ** 23, u + 2 ** 24, u)
    bias = np.asarray(node.bias_mant, dtype=np.int64)
    bias = bias << node.bias_exp if node.bias_exp >= 0 else bias >> -node.bias_exp
    v = np.clip(_decay(st["v"], 4096 - node.dv) + u + bias, -(2 ** 23) + 1, 2 ** 23 - 1)
    s = v > (node.vth << 6)
    st["u"], st["v"] = u, np.where(s, 0, v)
    return s


def reference(graph: Graph, inputs: np.ndarray, states: dict | None = None):
    """Delay-free in local time: at local step t each node sees its predecessor's step t.
    If `states` is given, it receives every LIF's final {"u", "v"} of the last sample."""
    n, t_len = inputs.shape[:2]
    lifs = [x.name for x in graph.nodes(FxLIF)]
    out = {k: np.zeros((n, t_len) + graph.shape(k), dtype=bool) for k in lifs}
    for i in range(n):
        state = {k: {"u": np.zeros(graph.shape(k), np.int64),
                     "v": np.zeros(graph.shape(k), np.int64)} for k in lifs}
        for t in range(t_len):
            val = {}
            for name in graph.order():
                node, ins = graph.node(name), graph.inputs(name)
                x = sum(val[k] for k in ins) if ins else None
                if isinstance(node, Input):
                    val[name] = inputs[i, t].astype(np.int64)
                elif isinstance(node, FxDense):
                    val[name] = _dense(node, x)
                elif isinstance(node, FxConv2d):
                    val[name] = _conv(node, x)
                elif isinstance(node, FxLIF):
                    val[name] = _lif_step(node, state[name], x)
                    out[name][i, t] = val[name]
                elif isinstance(node, Flatten):
                    val[name] = x.reshape(-1)
                else:
                    val[name] = x
        if states is not None:
            states.update(state)
    return out


# ------------------------------------------------------------------ tiny graphs
def _rng():
    return np.random.default_rng(1234)


def dense_binary_graph() -> Graph:
    r = _rng()
    return Graph.sequential([
        Input("in", shape=(12,)),
        FxDense("fc1", weight=r.integers(-200, 255, (8, 12)), weight_exp=1,
                num_weight_bits=7, sign_mode="mixed"),
        FxLIF("lif1", shape=(8,), du=300, dv=150, vth=1000,
              bias_mant=r.integers(-20, 40, 8), bias_exp=3),
        FxDense("fc2", weight=r.integers(0, 255, (5, 8)), weight_exp=-1,
                sign_mode="excitatory"),
        FxLIF("lif2", shape=(5,), du=4095, dv=0, vth=700),
        Output("out"),
    ])


def dense_graded_graph() -> Graph:
    r = _rng()
    return Graph.sequential([
        Input("in", shape=(6,), encoding="graded", bits=4),
        FxDense("fc1", weight=r.integers(-128, 128, (4, 6)), weight_exp=-2,
                num_weight_bits=8, num_message_bits=4),
        FxLIF("lif1", shape=(4,), du=1000, dv=2000, vth=400,
              bias_mant=np.array([0, 10, -10, 100]), bias_exp=1),
        Output("out"),
    ])


def conv_graph() -> Graph:
    r = _rng()
    c1 = FxConv2d("conv1", weight=r.integers(-60, 100, (3, 2, 3, 2)), stride=(2, 1),
                  padding=(1, 0))
    oh, ow = (7 + 2 - 3) // 2 + 1, (5 - 2) // 1 + 1  # (4, 4)
    return Graph.sequential([
        Input("in", shape=(2, 7, 5)),
        c1,
        FxLIF("lif1", shape=(3, oh, ow), du=200, dv=400, vth=1000,
              bias_mant=r.integers(-30, 60, (3, oh, ow)), bias_exp=2),
        Flatten("flat"),
        FxDense("fc", weight=r.integers(-120, 200, (4, 3 * oh * ow)), weight_exp=0),
        FxLIF("lif2", shape=(4,), du=50, dv=100, vth=2000),
        Output("out"),
    ])


def graded_conv_graph() -> Graph:
    """Graded image input, conv -> LIF -> flatten -> LIF (a permuted 1-D layer) -> dense."""
    r = _rng()
    return Graph.sequential([
        Input("in", shape=(2, 5, 4), encoding="graded", bits=8),
        FxConv2d("conv", weight=r.integers(-100, 100, (3, 2, 2, 3)), stride=(1, 2),
                 padding=(0, 1), num_message_bits=8),
        FxLIF("lif1", shape=(3, 4, 2), du=10, dv=20, vth=20000,
              bias_mant=r.integers(-100, 100, (3, 4, 2)), bias_exp=4),
        Flatten("flat"),
        FxLIF("lif2", shape=(24,), du=10, dv=20, vth=8, bias_mant=r.integers(0, 50, 24),
              bias_exp=2),
        FxDense("fc", weight=r.integers(-100, 200, (5, 24))),
        FxLIF("lif3", shape=(5,), du=10, dv=20, vth=100),
        Output("out"),
    ])


def image_flatten_graph() -> Graph:
    """An image input flattened straight into a dense layer (input-side permutation)."""
    r = _rng()
    return Graph.sequential([
        Input("in", shape=(2, 3, 4)), Flatten("flat"),
        FxDense("fc", weight=r.integers(-100, 200, (5, 24)), sign_mode="mixed"),
        FxLIF("lif1", shape=(5,), du=10, dv=20, vth=1500), Output("out"),
    ])


def _spikes(shape, rng, p=0.4):
    return (rng.random(shape) < p).astype(np.int32)


def _lava_children() -> list[int]:
    """Live child processes of this process (Lava's workers and managers are forked
    children), except multiprocessing's resource tracker: one per interpreter, started by
    the first shared-memory use and kept by Python itself until exit."""
    me, kids = os.getpid(), []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            with open(f"/proc/{pid}/cmdline") as f:
                cmdline = f.read()
        except OSError:
            continue
        if int(fields[1]) == me and fields[0] != "Z" and "resource_tracker" not in cmdline:
            kids.append(int(pid))
    return kids


def _check(graph, x):
    from snncompile.backends.lava.run import run_lava

    got = run_lava(graph, x)
    want = reference(graph, x)
    assert set(got.spikes) == set(want)
    for name in want:
        assert got.spikes[name].dtype == bool
        assert got.spikes[name].shape == want[name].shape
        mism = np.argwhere(got.spikes[name] != want[name])
        assert mism.size == 0, f"{name}: first mismatch at (n, t, ...)={mism[0]}"
        assert want[name].mean() < 1, f"{name}: degenerate test (spikes everywhere)"
    assert any(w.any() for w in want.values()), "degenerate test (no spikes)"
    assert not _lava_children()
    assert not multiprocessing.active_children()
    return got


# ------------------------------------------------------------------ tests
def test_dense_binary_several_samples():
    r = np.random.default_rng(7)
    _check(dense_binary_graph(), _spikes((3, 6, 12), r))


def test_dense_graded_input():
    r = np.random.default_rng(8)
    _check(dense_graded_graph(), r.integers(0, 16, (2, 5, 6)).astype(np.int32))


def test_conv_stride_padding_flatten_dense():
    r = np.random.default_rng(9)
    _check(conv_graph(), _spikes((2, 5, 2, 7, 5), r))


def test_graded_conv_and_flattened_lif():
    r = np.random.default_rng(14)
    _check(graded_conv_graph(), r.integers(0, 256, (3, 4, 2, 5, 4)).astype(np.int32))


def test_image_input_flattened_into_dense():
    _check(image_flatten_graph(), _spikes((3, 4, 2, 3, 4), np.random.default_rng(15)))


def test_flatten_straight_into_output():
    """A Flatten read only by Output: no Lava ReshapePort is left unconnected (Lava's
    compiler failed on one with a KeyError)."""
    r = _rng()
    graph = Graph.sequential([
        Input("in", shape=(2, 5, 4)),
        FxConv2d("conv", weight=r.integers(-60, 120, (3, 2, 3, 3)), padding=(1, 1)),
        FxLIF("lif", shape=(3, 5, 4), du=200, dv=400, vth=700), Flatten("flat"),
        Output("out")])
    got = _check(graph, _spikes((2, 4, 2, 5, 4), np.random.default_rng(16)))
    assert got.spikes["lif"].shape == (2, 4, 3, 5, 4)


def test_single_step_samples_reset_every_step():
    r = np.random.default_rng(10)
    _check(dense_binary_graph(), _spikes((4, 1, 12), r, p=0.7))


@pytest.mark.parametrize("make, node, step", [(dense_binary_graph, "lif2", 4),
                                               (conv_graph, "lif1", 3)])
def test_lava_state_matches_replica(make, node, step):
    from snncompile.backends.lava.run import lava_state

    graph = make()
    x = _spikes((1, 5) + graph.input_node().shape, np.random.default_rng(11))
    want: dict = {}
    reference(graph, x[:, : step + 1], want)
    u, v = lava_state(graph, x[0], node, step)
    assert u.shape == v.shape == graph.shape(node)
    np.testing.assert_array_equal(u, want[node]["u"])
    np.testing.assert_array_equal(v, want[node]["v"])
    assert want[node]["u"].any() and want[node]["v"].any()  # not a trivial zero state
    assert not _lava_children()


def test_progress_bar_only_when_asked_and_on_a_terminal(capsys, monkeypatch):
    from snncompile.backends.lava.run import run_lava

    x = _spikes((2, 3, 12), np.random.default_rng(12))
    run_lava(dense_binary_graph(), x, progress=True)   # captured stderr is not a terminal
    assert "step" not in capsys.readouterr().err
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)
    run_lava(dense_binary_graph(), x)
    assert "step" not in capsys.readouterr().err
    run = run_lava(dense_binary_graph(), x, progress=True)
    assert "8/8" in capsys.readouterr().err  # 2 samples * 3 steps + depth 2
    np.testing.assert_array_equal(run.spikes["lif2"], reference(dense_binary_graph(), x)["lif2"])


def test_worker_failure_is_one_line_backend_error(monkeypatch):
    from snncompile.backends.lava import procs as lava_procs
    from snncompile.backends.lava.run import run_lava

    def boom(self):
        raise RuntimeError("boom in worker\nsecond line")

    monkeypatch.setattr(lava_procs.PySpikeRecorderModel, "run_spk", boom)  # forked workers
    with pytest.raises(BackendError) as info:
        run_lava(dense_binary_graph(), _spikes((1, 2, 12), np.random.default_rng(13)))
    assert str(info.value) == "lava run failed: RuntimeError: boom in worker"
    assert not _lava_children()


def test_missing_lava_is_backend_error(monkeypatch):
    from snncompile.backends.lava.run import require_lava

    monkeypatch.setitem(sys.modules, "lava.magma.core.run_configs", None)
    with pytest.raises(BackendError, match=r"lava-nc is not installed: run `make venv`"):
        require_lava()


def test_bad_inputs_are_rejected():
    from snncompile.backends.lava.run import run_lava

    with pytest.raises(InputFileError, match="not \\(N, T"):
        run_lava(dense_binary_graph(), np.zeros((2, 3, 11), np.int32))
    with pytest.raises(InputFileError, match="outside"):
        run_lava(dense_binary_graph(), np.full((2, 3, 12), 2, np.int32))


def test_float_graph_is_unsupported():
    from snncompile.backends.lava.run import run_lava

    graph = Graph.sequential([Input("in", shape=(3,)), Dense("fc", weight=np.ones((2, 3))),
                              LIF("lif", shape=(2,)), Output("out")])
    with pytest.raises(UnsupportedError, match=r"fc: Dense .*FxDense.*quantize"):
        run_lava(graph, np.zeros((1, 2, 3), np.int32))


def test_lava_imports_after_start_method_was_fixed():
    """Lava's import-time mp.set_start_method('fork') must not break when someone already
    asked multiprocessing for its start method."""
    code = ("import multiprocessing, numpy as np; multiprocessing.get_start_method()\n"
            "import sys; sys.path.insert(0, 'tests')\n"
            "import test_lava_backend as t\n"
            "from snncompile.backends.lava.run import run_lava\n"
            "g = t.image_flatten_graph()\n"
            "x = t._spikes((1, 2, 2, 3, 4), np.random.default_rng(0))\n"
            "assert (run_lava(g, x).spikes['lif1'] == t.reference(g, x)['lif1']).all()\n"
            "print('OK')\n")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    res = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True,
                         text=True, timeout=120)
    assert res.returncode == 0 and "OK" in res.stdout, res.stderr[-2000:]
