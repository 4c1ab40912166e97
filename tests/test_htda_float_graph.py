"""HTDA's top-down loop in the float graph (TopDown, Delay, Gate), its float evaluation
step by step, HTDA builds with float/ and a fidelity verdict, and the netx source copy as
an explicit part of the build."""
from pathlib import Path

import numpy as np
import pytest
import torch

from snncompile.build import Build
from snncompile.errors import OutputFileError, UnsupportedError
from snncompile.frontends.torch_checkpoint import graph_from_model, import_checkpoint
from snncompile.ir import Delay, Gate, Graph, TopDown, graphs_equal
from snncompile.ir.limits import check_float_graph
from snncompile.backends.float_model import FLOAT, run_float
from snncompile.nn import save_checkpoint
from snncompile.nn.checkpoint import load_checkpoint
from snncompile.nn.htda import HTDA
from snncompile.passes.fold import fold_pools
from snncompile.passes.htda import insert_loop, set_aside_loop
from snncompile.pipeline import compile_model
from snncompile.verify.compare import verify

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "examples" / "checkpoints" / "attention_digits_htda.pt"
LIF = {"type": "lif", "du": 0.25, "dv": 0.1, "vth": 1.0}


def model_spikes(model: HTDA, x: np.ndarray) -> dict[str, np.ndarray]:
    """The PyTorch model's own forward (its top-down loop included): spikes per LIF."""
    rec: dict = {}
    with torch.no_grad():
        model(torch.as_tensor(x, dtype=torch.float32), record=rec)
    return {k: v["spikes"].numpy() > 0 for k, v in rec.items() if k != "maps"}


def small_htda(seed: int, **htda) -> HTDA:
    """A 6x6 HTDA whose source (3x3) is half the target's size (upsampling 2)."""
    torch.manual_seed(seed)
    cfg = {"model": "htda", "input": {"shape": [1, 6, 6], "encoding": "spikes"},
           "layers": [{"type": "conv2d", "out": 3, "kernel": 3, "padding": 1, "name": "conv1"},
                      dict(LIF, name="lif1"), {"type": "sumpool2d", "kernel": 2},
                      {"type": "conv2d", "out": 4, "kernel": 3, "padding": 1, "name": "conv2"},
                      dict(LIF, name="lif2"), {"type": "flatten"},
                      {"type": "dense", "out": 5, "name": "fc3"}, dict(LIF, name="lif3")],
           "htda": dict({"target": "lif1", "source": "lif2", "hidden": 4, "kernel": 3,
                         "latency": 2, "read": "count", "mask": "binary", "init": "ones",
                         "init_bias": 0.0}, **htda)}
    model = HTDA(cfg)
    with torch.no_grad():
        model.snn.layers[0].module.weight.mul_(3.0)
        model.ann[2].weight.mul_(4.0)
        if model.init_logit is not None:
            model.init_logit.uniform_(-2.0, 2.0)
    return model.eval()


def spikes_in(n: int, seed: int = 0, steps: int = 10) -> np.ndarray:
    return (np.random.default_rng(seed).random((n, steps, 1, 6, 6)) < 0.4).astype(np.int64)


# ------------------------------------------------------------------ the float graph
def test_demo_checkpoint_is_one_float_graph_equal_to_the_model_spike_for_spike(tmp_path):
    from examples.datasets.events import digits_images
    graph = import_checkpoint(DEMO)
    model, _ = load_checkpoint(DEMO)
    assert [type(graph.node(n)) for n in ("htda.top_down", "htda.delay", "htda.gate")] == \
        [TopDown, Delay, Gate]
    assert graph.inputs("lif1") == ["htda.gate"] and graph.inputs("htda.top_down") == ["lif2"]
    assert graph.stage == "float"
    check_float_graph(graph)
    graph.save(tmp_path)
    loaded = Graph.load(tmp_path)
    assert graphs_equal(loaded, graph)
    x = digits_images(steps=16, encoding="bernoulli")[0][:64]
    want = model_spikes(model, x)
    for g in (graph, loaded, insert_loop(fold_pools(set_aside_loop(graph)[0])[0],
                                         set_aside_loop(graph)[1])):
        got = run_float(g, x)
        assert set(got) == set(want) == {"lif1", "lif2", "lif3"}
        for name in want:
            assert np.array_equal(got[name], want[name]), name
    # the loop matters: without it lif1 fires differently
    plain = run_float(set_aside_loop(graph)[0], x)
    assert not np.array_equal(plain["lif1"], want["lif1"])


@pytest.mark.parametrize("settings", [
    {},                                                        # what the chip runs
    {"read": "rate", "mask": "soft"},
    {"read": "rate", "mask": "soft", "gain_bits": 3, "latency": 1},
    {"mask": "binary", "init": "learned", "latency": 3},
    {"read": "rate", "mask": "soft", "init": "learned"},
])
def test_float_graph_equals_the_model_for_every_loop_setting(settings):
    model = small_htda(1, **settings)
    graph = graph_from_model(model.snn)         # the SNN alone: no loop
    from snncompile.frontends.torch_checkpoint import model_graph
    full = model_graph("m.pt", model, {})
    x = spikes_in(6)
    want, got = model_spikes(model, x), run_float(full, x)
    for name in want:
        assert np.array_equal(got[name], want[name]), name
    assert got["lif1"].any() and got["lif2"].any()
    assert not np.array_equal(run_float(graph, x)["lif1"], want["lif1"]), \
        "the top-down map should change lif1"
    assert (full.node("htda.delay").init is None) == (settings.get("init") != "learned")


def test_set_aside_loop_gives_back_the_feed_forward_snn():
    model = small_htda(2)
    from snncompile.frontends.torch_checkpoint import model_graph
    full = model_graph("m.pt", model, {})
    ff, loop = set_aside_loop(full)
    want = graph_from_model(model.snn, dict(full.meta))
    assert graphs_equal(ff, want)
    assert (loop.source, loop.target, loop.delay.latency) == ("lif2", "lif1", 2)
    assert graphs_equal(insert_loop(ff, loop), full)
    assert set_aside_loop(want) == (want, None)


def test_float_rules_cover_the_float_node_types_and_refuse_in_one_line():
    from snncompile.ir import FLOAT_TYPES, FxLIF, Input
    assert all(FLOAT.supports(t) for t in FLOAT_TYPES)
    g = Graph.sequential([Input("input", shape=(2,)), FxLIF("x", shape=(2,))])
    with pytest.raises(UnsupportedError, match="x: FxLIF has no float evaluation rule"):
        run_float(g, np.zeros((1, 2, 2)))


def test_a_top_down_branch_outside_the_loop_chain_is_refused():
    model = small_htda(0)
    top, _, _ = model.top_down_nodes()
    ff = graph_from_model(model.snn)
    g = Graph(ff.meta)
    for name in ff.order():
        g.add(ff.node(name), ff.inputs(name))
        if name == "lif2":
            g.add(top, ["lif2"])                  # no Delay, no Gate: not a loop
    with pytest.raises(UnsupportedError, match="one TopDown -> Delay -> Gate"):
        set_aside_loop(g)


# ------------------------------------------------------------------ HTDA builds
def test_htda_build_keeps_a_float_graph_and_verify_gives_a_fidelity_verdict(tmp_path):
    ckpt = tmp_path / "htda.pt"
    save_checkpoint(small_htda(0), ckpt)
    build = compile_model(ckpt, "loihi2", calib=spikes_in(16, seed=1))
    assert build.float_graph is not None and build.float_graph.nodes(TopDown)
    again = compile_model(build.float_graph, "loihi2", calib=spikes_in(16, seed=1))
    assert graphs_equal(again.graph, build.graph)   # the float graph is the whole model
    assert build.report["fidelity"]["checked"]
    assert build.report["fidelity"]["float_model"] == "float graph, float/"
    assert "htda.coproc" in build.graph             # the chip's loop, lowered after quantise
    build.save(tmp_path / "b")
    names = set(build.members)
    assert {"float/graph.json", "float/arrays.npz"} <= names
    assert not any(n.startswith("htda/") for n in names)
    loaded = Build.load(tmp_path / "b")
    assert graphs_equal(loaded.float_graph, build.float_graph)
    rep = verify(loaded, spikes_in(4, seed=2), backends=("reference", "sim"))
    assert rep.equivalent
    assert rep.fidelity.checked and rep.fidelity.float_model == "float graph, float/"
    assert [r["layer"] for r in rep.fidelity.layers] == ["lif1", "lif2", "lif3"]


def test_legacy_htda_build_says_to_recompile(tmp_path):
    from snncompile.verify.fidelity import float_side
    ckpt = tmp_path / "htda.pt"
    save_checkpoint(small_htda(0), ckpt)
    build = compile_model(ckpt, "loihi2", calib=spikes_in(8, seed=1))
    build.float_graph = None
    build.extra_bytes["htda/model.pt"] = ckpt.read_bytes()   # as builds used to be
    build.save(tmp_path / "old")
    runner, why = float_side(Build.load(tmp_path / "old"))
    assert runner is None and "recompile" in why and "htda/model.pt" in why


# ------------------------------------------------------------------ the netx source copy
def _netx_file(tmp_path) -> Path:
    pytest.importorskip("lava.lib.dl.slayer")
    import lava.lib.dl.slayer as slayer
    from netx_files import export_blocks
    neuron = {"threshold": 1.25, "current_decay": 0.25, "voltage_decay": 0.03,
              "requires_grad": False}
    torch.manual_seed(3)
    blocks = [slayer.block.cuba.Dense(neuron, 10, 8, weight_scale=3, weight_norm=False),
              slayer.block.cuba.Dense(neuron, 8, 4, weight_scale=3, weight_norm=False)]
    path = tmp_path / "dense.net"
    export_blocks(blocks, path, (torch.rand(1, 10, 4) < 0.3).float())
    return path


def test_netx_build_keeps_its_source_copy_through_save_and_load(tmp_path):
    path = _netx_file(tmp_path)
    build = compile_model(path, "loihi2")
    assert build.source_copy == path.read_bytes()
    assert Build.NETX_SOURCE not in build.extra_bytes        # not smuggled with the ONNX
    assert build.netx_source() is None                       # not saved yet
    build.save(tmp_path / "b")
    assert build.netx_source().read_bytes() == path.read_bytes()
    loaded = Build.load(tmp_path / "b")
    assert loaded.source_copy == path.read_bytes()
    assert loaded.netx_source() == tmp_path / "b" / "netx" / "network.net"
    loaded.save(tmp_path / "again")                          # a re-save keeps it
    assert (tmp_path / "again" / "netx" / "network.net").read_bytes() == path.read_bytes()


def test_source_copy_and_an_extra_member_of_the_same_name_are_refused(tmp_path):
    build = Build.load(_compiled_tiny(tmp_path))
    build.source_copy = b"netx"
    build.extra_bytes = {Build.NETX_SOURCE: b"other"}
    with pytest.raises(OutputFileError, match="netx source copy"):
        build.save(tmp_path / "x.build")


def _compiled_tiny(tmp_path) -> Path:
    from conftest import make_tiny
    make_tiny(tmp_path / "tiny.pt")
    from snncompile.pipeline import FidelityWarning
    with pytest.warns(FidelityWarning, match="no calibration data"):
        return compile_model(tmp_path / "tiny.pt", "loihi2").save(tmp_path / "tiny.build")


@pytest.mark.lava
def test_netx_backend_verifies_the_in_memory_build_after_save(tmp_path):
    path = _netx_file(tmp_path)
    x = (np.random.default_rng(4).random((3, 9, 10)) < 0.4).astype(np.uint8)
    build = compile_model(path, "loihi2", calib=x)
    build.save(tmp_path / "b")
    rep = verify(build, x, backends=("sim", "netx"))
    assert rep.equivalent, rep.text()
    assert rep.backends["netx"]["spikes"] > 0
