import json

import numpy as np
import pytest

from snncompile.errors import GraphError, InputFileError
from snncompile.frontends import import_checkpoint
from snncompile.ir import LIF, Dense, Flatten, Graph, Input, Output, graphs_equal
from snncompile.passes.fold import fold_pools
from snncompile.passes.quantize import quantize
from snncompile.target import load_target


def test_checkpoint_graph_shapes_kinds_and_depth(tiny_files):
    g = import_checkpoint(tiny_files[0])
    assert g.order() == ["input", "conv1", "lif1", "sumpool2d1", "flatten1", "fc2", "lif2",
                         "output"]
    assert g.shape("sumpool2d1") == (3, 3, 3) and g.kind("sumpool2d1") == "graded"
    assert g.kind("lif1") == "spikes" and g.g.edges["lif1", "sumpool2d1"]["shape"] == (3, 6, 6)
    assert [g.depth(n) for n in ("input", "conv1", "lif1", "fc2", "lif2")] == [0, 1, 1, 2, 2]


@pytest.mark.parametrize("stage", ["float", "fixed"])
def test_graph_roundtrips_identically(tiny_files, tmp_path, stage):
    g, _ = fold_pools(import_checkpoint(tiny_files[0]))
    if stage == "fixed":
        g, _ = quantize(g, load_target("loihi2"))
    g.save(tmp_path)
    h = Graph.load(tmp_path)
    assert graphs_equal(g, h) and h.stage == stage
    # and the files are byte-identical when written again
    first = (tmp_path / "arrays.npz").read_bytes(), (tmp_path / "graph.json").read_text()
    h.save(tmp_path)
    assert first == ((tmp_path / "arrays.npz").read_bytes(),
                     (tmp_path / "graph.json").read_text())
    doc = json.loads(first[1])
    assert doc["format"] == "snncompile-graph" and doc["stage"] == stage


def test_graphs_equal_notices_a_changed_weight(tiny_files):
    g = import_checkpoint(tiny_files[0])
    h = import_checkpoint(tiny_files[0])
    h.node("fc2").weight[0, 0] += 1e-3
    assert graphs_equal(g, g) and not graphs_equal(g, h)


def test_shape_mismatch_names_the_node():
    with pytest.raises(GraphError, match="fc: Dense expects input \\(5,\\), got \\(4,\\)"):
        Graph.sequential([Input("in", shape=(4,)), Dense("fc", weight=np.zeros((3, 5))),
                          LIF("l", shape=(3,)), Output("o")])


def test_corrupt_graph_json_is_one_clear_error(tmp_path):
    (tmp_path / "graph.json").write_text("{not json")
    with pytest.raises(InputFileError, match="graph.json: corrupt JSON"):
        Graph.load(tmp_path)


def test_fold_pools_is_exact_in_float(tiny_files):
    from snncompile.backends.float_model import run_float
    g = import_checkpoint(tiny_files[0])
    f, changed = fold_pools(g)
    assert changed and "sumpool2d1" not in f and isinstance(f.node("flatten1"), Flatten)
    x = tiny_files[2]
    a, b = run_float(g, x), run_float(f, x)
    assert all(np.array_equal(a[k], b[k]) for k in a)
