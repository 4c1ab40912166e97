"""Hostile checkpoints (written with torch.save, loaded with weights_only=True): exotic
tensors, tensors that declare more data than the file holds, non-integer or non-finite
config fields and huge layer counts are one line each, found before anything large is
allocated; conv stride 0 and fractional sizes are refused by the IR nodes themselves."""
from __future__ import annotations

import copy
import os
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import TINY_CONFIG
from snncompile.errors import GraphError, InputFileError, SnnCompileError
from snncompile.ir import Conv2d, Flatten, Graph, Input, Output, SumPool2d
from snncompile.nn import SNN, load_checkpoint
from snncompile.nn.checkpoint import (FORMAT, MAX_LAYERS, VERSION, _build, model_class,
                                      read_checkpoint)

WEIGHT = "layers.4.module.weight"     # fc2 of TINY_CONFIG: (4, 27)


def _save(path, config, state):
    torch.save({"format": FORMAT, "version": VERSION, "config": config, "state_dict": state},
               path)
    return path


def _state(config=TINY_CONFIG):
    torch.manual_seed(0)
    return {k: v.detach().clone() for k, v in SNN(config).state_dict().items()}


def test_stride0_tensor_declaring_a_gigabyte_is_refused_before_allocation(tmp_path):
    """A 1 KB file whose weight is one float expanded (stride 0) to 256 x 2**20, with a
    config that asks for exactly that layer: before, building the model allocated and
    initialised 1 GiB."""
    config = {"input": {"shape": [256]},
              "layers": [{"type": "dense", "out": 1 << 20}, {"type": "lif", "du": 0.1,
                                                             "dv": 0.1}]}
    state = {"layers.0.module.weight": torch.zeros(1).expand(1 << 20, 256)}
    path = _save(tmp_path / "bomb.pt", config, state)
    assert path.stat().st_size < 2048
    tracemalloc.start()
    t0 = time.perf_counter()
    try:
        with pytest.raises(InputFileError, match=r"shape \(1048576, 256\) is not stored in "
                                                 r"full \(stride 0"):
            load_checkpoint(path)
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert time.perf_counter() - t0 < 5 and peak < 16 << 20


def test_config_larger_than_its_weights_is_refused_before_allocation(tmp_path):
    """Same layer, no weights at all: the meta-device skeleton finds the missing key."""
    config = {"input": {"shape": [256]},
              "layers": [{"type": "dense", "out": 1 << 20}, {"type": "lif", "du": 0.1,
                                                             "dv": 0.1}]}
    path = _save(tmp_path / "empty.pt", config, {})
    t0 = time.perf_counter()
    with pytest.raises(InputFileError, match="missing"):
        load_checkpoint(path)
    assert time.perf_counter() - t0 < 5


def _exotic():
    w = torch.randn(4, 27)
    cases = {
        "float8": (lambda: w.to(torch.float8_e4m3fn), "dtype float8_e4m3fn"),
        "complex": (lambda: w.to(torch.complex64), "dtype complex64"),
        "int": (lambda: w.to(torch.int32), "dtype int32"),
        "qint8": (lambda: torch.quantize_per_tensor(w, 0.1, 0, torch.qint8), "quantized"),
        "sparse": (lambda: w.to_sparse(), "sparse_coo tensor"),
        "meta": (lambda: torch.empty(4, 27, device="meta"), "meta tensor"),
        "nan": (lambda: w.masked_fill(w > 0, float("nan")), "contains NaN or inf"),
        "inf": (lambda: w.masked_fill(w > 0, float("inf")), "contains NaN or inf"),
        "overlap": (lambda: torch.randn(30).as_strided((4, 27), (1, 1)),
                    "not stored in full"),
        "not a tensor": (lambda: [1.0] * 108, "is a list, not a tensor"),
    }
    return cases


@pytest.mark.filterwarnings("ignore:torch.quantize_per_tensor")
@pytest.mark.parametrize("case", sorted(_exotic()))
def test_exotic_tensors_are_one_line(tmp_path, case):
    make, match = _exotic()[case]
    state = _state()
    state[WEIGHT] = make()
    path = _save(tmp_path / "x.pt", TINY_CONFIG, state)
    with pytest.raises(InputFileError) as info:
        load_checkpoint(path)
    msg = str(info.value)
    assert "\n" not in msg and WEIGHT in msg and match in msg, msg


@pytest.mark.parametrize("where, value, match", [
    (("input", "bits"), 2.5, r"config.input 'bits' = 2.5 must be an integer"),
    (("input", "shape"), [1, 6.5, 6], r"'shape' = \[1, 6.5, 6\] must be integers"),
    (("layers", 0, "stride"), 1.5, r"config.layers\[0\] 'stride' = 1.5"),
    (("layers", 0, "kernel"), True, r"'kernel' = True"),
    (("layers", 0, "out"), "3", r"'out' = '3'"),
    (("layers", 1, "vth"), float("inf"), r"'vth' = inf must be a finite number"),
    (("layers", 1, "du"), float("nan"), r"'du' = nan must be a finite number"),
    (("layers", 1, "dv"), None, r"'dv' = None must be a finite number"),
    (("layers", 0, "stride"), 0, r"'stride' = 0 is not an integer in \[1, "),
    (("layers",), [], "'layers' must be a non-empty list"),
    (("input",), 7, "'input' must be a table"),
    (("layers", 0, "name"), "x" * 300, "string of 300 characters"),
    # found by the long hostile corpus (were exit 3: OverflowError, unhashable name)
    (("input", "shape"), [1, 6, float("-inf")], r"'shape' = \[1, 6, -inf\] must be"),
    (("layers", 5, "name"), [[1]], r"'name' = \[\[1\]\] must be a string"),
])
def test_config_fields_are_refused_not_truncated(tmp_path, where, value, match):
    config = copy.deepcopy(TINY_CONFIG)
    target = config
    for key in where[:-1]:
        target = target[key]
    target[where[-1]] = value
    path = _save(tmp_path / "c.pt", config, _state())
    with pytest.raises(SnnCompileError, match=match) as info:
        load_checkpoint(path)
    assert "\n" not in str(info.value)


def test_deeply_nested_config_and_many_layers(tmp_path):
    config = copy.deepcopy(TINY_CONFIG)
    deep: list = []
    for _ in range(50):
        deep = [deep]
    config["extra"] = deep
    with pytest.raises(InputFileError, match="nested deeper"):
        load_checkpoint(_save(tmp_path / "d.pt", config, _state()))
    many = {"input": {"shape": [4]},
            "layers": [{"type": "flatten"}] * 5000 + [{"type": "dense", "out": 2},
                                                      {"type": "lif", "du": .1, "dv": .1}]}
    t0 = time.perf_counter()
    with pytest.raises(InputFileError, match=f"5002 layers exceed {MAX_LAYERS}"):
        load_checkpoint(_save(tmp_path / "m.pt", many, {}))
    assert time.perf_counter() - t0 < 5


def test_valid_tiny_checkpoint_still_loads_and_matches(tmp_path):
    state = _state()
    model, _ = load_checkpoint(_save(tmp_path / "ok.pt", TINY_CONFIG, state))
    got = model.state_dict()
    assert all(torch.equal(got[k], state[k]) for k in state)


# ------------------------------------------------------------------ IR node fields
@pytest.mark.parametrize("make, match", [
    (lambda: Conv2d("c", weight=np.ones((1, 1, 3, 3), np.float32), stride=(0, 1)),
     r"c: Conv2d stride = 0 must be an integer in \[1, "),
    (lambda: Conv2d("c", weight=np.ones((1, 1, 3, 3), np.float32), stride=(1.5, 1)),
     "stride = 1.5"),
    (lambda: Conv2d("c", weight=np.ones((1, 1, 3, 3), np.float32), padding=(-1, 0)),
     "padding = -1"),
    (lambda: Conv2d("c", weight=np.ones((1, 1, 3, 3), np.float32), stride=(1,)),
     "must have 2 entries"),
    (lambda: Conv2d("c", weight=np.ones((1, 1, 3, 3), np.float32), groups=0), "groups = 0"),
    (lambda: SumPool2d("p", kernel=(0, 0)), "kernel = 0"),
    (lambda: Input("i", shape=(2.5,)), r"shape = 2.5"),
    (lambda: Input("i", shape=(3,), encoding="graded", bits=2.5), "bits = 2.5"),
    (lambda: Input("i", shape=("3",)), "shape = '3'"),
    (lambda: Input("i", shape=(float("nan"),)), "shape = nan"),
])
def test_ir_fields_are_checked(make, match):
    with pytest.raises(GraphError, match=match):
        make()


def test_graph_algorithms_are_linear():
    """20,000 nodes validate in well under a few seconds (it was quadratic: each depth
    recomputed the topological order)."""
    nodes = [Input("in", shape=(4,))] + [Flatten(f"f{i}") for i in range(20000)]
    t0 = time.perf_counter()
    graph = Graph.sequential(nodes + [Output("o")])
    graph.validate()
    assert [graph.depth(n) for n in graph.order()][-1] == 0
    assert time.perf_counter() - t0 < 10


def test_huge_finite_weight_is_a_quantization_error(tmp_path, capsys):
    """A bit flip made a weight 3e38: calibration overflowed and quantize hit
    math.log2(0) (exit 3, found by the long hostile corpus); now one line naming the
    layer."""
    from snncompile.cli import main
    from snncompile.data import save_inputs

    state = _state()
    state[WEIGHT][0, 0] = 3.2e38
    path = _save(tmp_path / "w.pt", TINY_CONFIG, state)
    save_inputs(tmp_path / "c.npz", np.ones((2, 4, 1, 6, 6), np.uint8))
    assert main(["compile", str(path), "-o", str(tmp_path / "b"), "--calib",
                 str(tmp_path / "c.npz"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "lif2: no fixed-point scale fits" in err, err


def _hwm_mb() -> float:
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


@pytest.mark.skipif(not os.path.exists("/proc/self/clear_refs"), reason="Linux only")
def test_oversize_checkpoint_data_is_not_read_before_it_is_refused(tmp_path, monkeypatch):
    """torch.load(mmap=True): a checkpoint whose (real) tensors exceed the limit is refused
    without reading them into memory (found by the long corpus: a 1 GB file peaked at
    1.7 GB before being refused)."""
    from snncompile.nn import checkpoint

    big = torch.zeros(64 << 18)          # 64 MiB of float32, really in the file
    state = _state()
    state["extra"] = big
    path = _save(tmp_path / "big.pt", TINY_CONFIG, state)
    monkeypatch.setattr(checkpoint, "MAX_STATE_ELEMENTS", 1 << 20)
    del big, state
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")
    before = _hwm_mb()
    with pytest.raises(InputFileError, match="more than 1048576 values"):
        load_checkpoint(path)
    assert _hwm_mb() - before < 32


@pytest.mark.parametrize("path", sorted(
    str(p) for p in (Path(__file__).parent.parent / "examples" / "checkpoints").glob("*.pt")))
def test_every_shipped_model_builds_as_a_meta_skeleton(path):
    """The names-and-shapes check before allocation only runs if the model builds on the meta
    device; `_build` falls back to a real build (allocating whatever the config asks) when
    it cannot. LIFLayer's parameter checks once called .item() on meta tensors, so every
    model fell back: the 1M-neuron config above allocated 1 GiB before being refused."""
    config = read_checkpoint(path)["config"]
    assert _build(path, model_class(config), config, meta=True) is not None


def test_the_oversized_config_builds_as_a_meta_skeleton():
    config = {"input": {"shape": [256]},
              "layers": [{"type": "dense", "out": 1 << 20},
                         {"type": "lif", "du": 0.1, "dv": 0.1, "vth": 0.5}]}
    assert _build("x.pt", model_class(config), config, meta=True) is not None
