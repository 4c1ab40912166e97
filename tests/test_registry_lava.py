"""The Lava lowering behind the registry (snncompile/backends/lava/lower.py), its recorders,
and the Lava session API (snncompile/backends/lava/session.py)."""
from __future__ import annotations

import importlib.util
import multiprocessing
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import pytest

from snncompile.errors import BackendError, UnsupportedError
from snncompile.ir.graph import Graph
from snncompile.ir.nodes import (FIXED_TYPES, Flatten, FxConv1d, FxConv2d, FxCoproc,
                                 FxCoprocOut, FxDelay, FxDense, FxGate, FxLI, FxLIF,
                                 FxSigmaDelta, Input, Node, Output)

HAS_LAVA = importlib.util.find_spec("lava") is not None
needs_lava = [pytest.mark.lava, pytest.mark.skipif(not HAS_LAVA,
                                                   reason="lava-nc is not installed")]


@dataclass
class FxMystery(Node):
    """A fixed-stage node type nobody registered a Lava lowering for."""

    name: str
    stage: ClassVar[str] = "fixed"
    is_neuron: ClassVar[bool] = True
    kind: ClassVar[str] = "spikes"

    def out_shape(self, in_shapes):
        return self._one(in_shapes)


def _mystery_graph() -> Graph:
    return Graph.sequential([Input("in", shape=(4,)),
                             FxDense("fc", weight=np.ones((3, 4), np.int64)),
                             FxMystery("odd"), Output("out")])


# ------------------------------------------------------------------ without Lava
def test_lower_types_are_what_run_lava_supports():
    from snncompile.backends.lava import run
    from snncompile.backends.lava.lower import LOWER

    assert set(LOWER.types) == {Input, FxDense, FxConv2d, FxConv1d, Flatten, Output, FxLIF,
                                FxSigmaDelta, FxGate, FxCoproc, FxCoprocOut, FxDelay, FxLI}
    assert run.SUPPORTED == LOWER.types
    # every fixed-stage node type of the IR has a lowering (none forgotten)
    assert all(LOWER.supports(t) for t in FIXED_TYPES), \
        [t.__name__ for t in FIXED_TYPES if not LOWER.supports(t)]
    assert not LOWER.supports(FxMystery)


def test_unregistered_type_is_refused_in_one_line_before_lava_starts(monkeypatch):
    from snncompile.backends.lava import lower, run

    def must_not_start(*args, **kwargs):
        raise AssertionError("Lava was started for a graph it cannot run")

    monkeypatch.setattr(run, "require_lava", must_not_start)
    monkeypatch.setattr(run, "build", must_not_start)
    with pytest.raises(UnsupportedError) as info:
        run.run_lava(_mystery_graph(), np.zeros((1, 2, 4), np.int32))
    msg = str(info.value)
    assert "\n" not in msg
    assert msg.startswith("odd: FxMystery has no Lava lowering rule (supported: Input, ")
    assert lower.LOWER.names() in msg
    assert run.LavaBackend().unsupported(_mystery_graph()) == lower.LOWER.refusal(
        _mystery_graph().node("odd"))
    with pytest.raises(UnsupportedError, match="^odd: FxMystery has no Lava lowering"):
        run.lava_state(_mystery_graph(), np.zeros((2, 4), np.int32), "odd", 0)


def test_supported_graph_has_no_refusal():
    from snncompile.backends.lava.run import LavaBackend

    graph = Graph.sequential([Input("in", shape=(4,)),
                              FxDense("fc", weight=np.ones((3, 4), np.int64)),
                              FxLIF("lif", shape=(3,)), Output("out")])
    assert LavaBackend().unsupported(graph) is None


def test_readouts_name_their_recorder_and_reader():
    from snncompile.backends.lava.lower import GRADED, SPIKES, VALUES, VOLTAGE

    assert (SPIKES.recorder, SPIKES.reader, SPIKES.dtype) == ("SpikeRecorder",
                                                               "read_record", bool)
    assert {r.recorder for r in (GRADED, VALUES)} == {"ValueRecorder"}
    assert VOLTAGE.recorder == "VarRecorder"   # a Var (e.g. v) read whole every step


# ------------------------------------------------------------------ with Lava
def _lava_children() -> list[int]:
    import test_lava_backend as t
    return t._lava_children()


@pytest.mark.parametrize("fail_in", ["body", "run"])
@pytest.mark.lava
@pytest.mark.skipif(not HAS_LAVA, reason="lava-nc is not installed")
def test_session_shuts_lava_down_on_an_exception(fail_in, monkeypatch):
    from snncompile.backends.lava import procs as lava_procs
    from snncompile.backends.lava.session import lava_session, require_lava

    require_lava()
    from lava.proc.io.source import PySendModelFixed, RingBuffer

    if fail_in == "run":     # a worker fails (forked workers see the patched class)
        def boom(self):
            raise RuntimeError("boom in worker\nsecond line")
        monkeypatch.setattr(lava_procs.PyValueRecorderModel, "run_spk", boom)
    src = RingBuffer(data=np.ones((3, 4), np.int32))
    rec = lava_procs.ValueRecorder(shape=(3,), path="/nonexistent/never.npy", start=99,
                                   count=1)
    rec.watch(src.s_out)
    models = {src: PySendModelFixed, rec: lava_procs.PyValueRecorderModel}
    with pytest.raises(BackendError) as info:
        with lava_session("tiny run failed") as session:
            session.start(src, models)
            session.run(2)
            assert session.runner.runtime._is_started
            raise RuntimeError("after the run\nmore")
    want = ("tiny run failed: RuntimeError: boom in worker" if fail_in == "run"
            else "tiny run failed: RuntimeError: after the run")
    assert str(info.value) == want
    assert not src.runtime._is_started and not src.runtime._is_running
    assert not _lava_children()
    assert not multiprocessing.active_children()


@pytest.mark.lava
@pytest.mark.skipif(not HAS_LAVA, reason="lava-nc is not installed")
def test_session_runs_and_stops_gracefully(capsys):
    from snncompile.backends.lava.session import lava_session, require_lava

    require_lava()
    from lava.proc.io.sink import PyReceiveModelFixed
    from lava.proc.io.sink import RingBuffer as Sink
    from lava.proc.io.source import PySendModelFixed, RingBuffer

    data = np.arange(8, dtype=np.int32).reshape(2, 4)
    src, sink = RingBuffer(data=data), Sink(shape=(2,), buffer=4)
    src.s_out.connect(sink.a_in)
    with lava_session() as session:
        session.start(src, {src: PySendModelFixed, sink: PyReceiveModelFixed})
        session.run(4, progress=True)
        got = np.asarray(sink.data.get())
    np.testing.assert_array_equal(got, data)
    assert not src.runtime._is_running
    assert not _lava_children()


@pytest.mark.lava
@pytest.mark.skipif(not HAS_LAVA, reason="lava-nc is not installed")
def test_voltage_recorder_reads_a_whole_layer_var_every_step(tmp_path):
    """What a voltage readout's lowering would do: record a LIFReset's `v` with the
    VOLTAGE readout; each local step's row equals the replica's v after that step, in our
    (C, H, W) layout."""
    import test_lava_backend as t

    from snncompile.backends.lava.lower import VOLTAGE, build
    from snncompile.backends.lava.session import lava_session, require_lava
    from snncompile.ir.timing import timing

    require_lava()
    graph = t.conv_graph()
    x = t._spikes((1, 4) + graph.input_node().shape, np.random.default_rng(11))
    steps = timing(graph, x.shape[1]).stream_steps(1)
    with lava_session() as session:
        net = build(graph, x, steps, tmp_path)
        proc, perm, lshape = net.neurons["lif1"]
        net.record("lif1:v", "lif1", proc.v, perm, lshape, graph.shape("lif1"), VOLTAGE)
        session.start(net.runner, net.models)
        session.run(steps)
    values, _ = net.read_back()
    v = values["lif1:v"]
    assert v.shape == (1, 4) + graph.shape("lif1") and v.dtype == np.int32
    for k in range(x.shape[1]):
        want: dict = {}
        t.reference(graph, x[:, : k + 1], want)
        np.testing.assert_array_equal(v[0, k], want["lif1"]["v"], err_msg=f"step {k}")
    assert v.any()
    np.testing.assert_array_equal(values["lif1"], t.reference(graph, x)["lif1"])
    assert not _lava_children()
