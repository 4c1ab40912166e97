"""Mapping objectives (cores / latency), the lower bound and energy's choice of placement."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings

from hypothesis_profile import examples
from snncompile.ir.nodes import FxConv2d, FxDense
from snncompile.mapping.place import map_graph
from snncompile.mapping.split import RESOURCES, _DenseSyn, axon_bits
from snncompile.target import load_target

from strategies import fixed_networks

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
import bench_mapping  # noqa: E402

LOIHI1 = load_target("loihi1")
LOIHI2 = load_target("loihi2")


def tiny_target(tmp_path):
    """Small cores, so random small networks split into many blocks and share cores."""
    text = ('base = "loihi1"\nname = "tiny"\n[limits]\nneurons = 8\ninput_axons = 40\n'
            'output_axons = 24\nsynapse_bits = 4096\n')
    path = tmp_path / "tiny.toml"
    path.write_text(text)
    return load_target(path)


def check_limits(graph, m, spec):
    """Every core's resources, recounted from the graph and the traffic edges (not from the
    blocks' own usage), are within every per-core limit."""
    lim = spec.limits
    n_blocks = len(m.blocks)
    fan_in = np.zeros(n_blocks, np.int64)
    fan_out = np.zeros(n_blocks, np.int64)
    from snncompile.mapping.split import split_graph
    part = split_graph(graph, spec, rates=m.rates, work_cap=m.work_cap)
    assert [b.n_neurons for b in part.blocks] == [b.n_neurons for b in m.blocks]
    for s, d, n in part.edges.tolist():
        fan_in[d] += n
        if s >= 0:
            fan_out[s] += n
    bits = np.zeros(n_blocks, np.int64)
    for b in m.blocks:
        node = graph.node(b.synapse) if b.synapse else None
        if isinstance(node, FxDense):
            syn = _DenseSyn(node, node.weight.shape[0], lim)
            cnt = (node.weight[b.start:b.stop] != 0).sum(0)
            bits[b.index] = int(axon_bits(cnt[cnt > 0], syn.bpw, lim).sum())
        elif isinstance(node, FxConv2d):
            bits[b.index] = b.usage["synapse_bits"]  # kernel-sharing encoding: split's count
        bits[b.index] += lim.neuron_state_bits * b.n_neurons * (not isinstance(node, FxConv2d))
    for c in m.cores:
        use = {"neurons": sum(m.blocks[b].n_neurons for b in c.blocks),
               "input_axons": int(fan_in[c.blocks].sum()),
               "output_axons": int(fan_out[c.blocks].sum()),
               "synapse_bits": int(bits[c.blocks].sum())}
        for r in RESOURCES:
            assert use[r] <= lim.limit(r), (c.index, r, use[r], lim.limit(r))
    if m.work_cap is not None:
        single = max(b.work / max(b.n_neurons, 1) for b in m.blocks)
        for c, w in zip(m.cores, m.core_work):
            assert w <= m.work_cap * (1 + 1e-9) or len(c.blocks) == 1 and \
                m.blocks[c.blocks[0]].n_neurons == 1 or w <= single


@settings(max_examples=examples(25), deadline=None, suppress_health_check=list(HealthCheck))
@given(net=fixed_networks(max_layers=3))
def test_every_per_core_limit_holds_for_both_objectives(net, tmp_path_factory):
    spec = tiny_target(tmp_path_factory.mktemp("t"))
    graph = net if not isinstance(net, tuple) else net[0]
    rates = {n: 0.3 for n in graph.order()
             if type(graph.node(n)).__name__ in ("Input", "FxLIF", "FxSigmaDelta")}
    try:
        cores = map_graph(graph, spec, rates=rates, objective="cores")
    except Exception as exc:  # a single neuron that fits no tiny core is refused, by name
        assert "exceeds the per-core limit" in str(exc)
        return
    check_limits(graph, cores, spec)
    lat = map_graph(graph, spec, rates=rates, objective="latency",
                    max_cores=cores.n_cores + 4)
    assert lat.n_cores <= cores.n_cores + 4
    check_limits(graph, lat, spec)
    assert cores.n_cores >= cores.lower_bound["cores"]


PASSING = [(t, n) for t in ("loihi1", "loihi2") for n in bench_mapping.SHAPES]


def _ratio(target, name):
    from snncompile.mapping.split import split_graph
    part = split_graph(bench_mapping.SHAPES[name](), load_target(target))
    assert part.n_cores >= part.lower_bound["cores"]  # a bound below the packing, always
    return part.n_cores / part.lower_bound["cores"]


@pytest.mark.parametrize("target,name", PASSING)
def test_cores_within_115_percent_of_the_bound_on_bench_shapes(target, name):
    assert _ratio(target, name) <= 1.15


def test_latency_objective_lowers_the_busiest_cores_work():
    g = bench_mapping.build(32)
    rates = {n: 0.1 for n in ("in", "lif1", "lif2", "lif3", "lif4", "lif5", "lif6")}
    m = map_graph(g, LOIHI2, rates=rates, objective="latency", compare=True)
    cores, lat = m.objectives["cores"], m.objectives["latency"]
    assert m.objective == "latency" and m.n_cores == lat["cores"]
    assert lat["busiest_core_synops_per_step"] < 0.75 * cores["busiest_core_synops_per_step"]
    assert lat["latency_per_step_s"] < cores["latency_per_step_s"]
    assert lat["cores"] <= 3 * LOIHI2.chip.cores_per_chip  # the default budget: its chips
    text = m.table()
    assert "cores / lower bound =" in text and "objective latency" in text
    with pytest.raises(Exception, match="max_cores=10: below the"):
        map_graph(g, LOIHI2, rates=rates, objective="latency", max_cores=10)


def test_energy_prices_the_builds_mapping_unless_replacing(tmp_path):
    from snncompile.build import Build
    from snncompile.energy.run import energy_report
    from snncompile.pipeline import compile_model

    from snncompile.ir import FxLIF, Graph, Input, Output

    rng = np.random.default_rng(0)
    w1 = (rng.integers(-60, 60, (300, 64)) * 2).astype(np.int32)  # 8-bit mixed mantissas
    w2 = (rng.integers(-60, 60, (10, 300)) * 2).astype(np.int32)
    g = Graph.sequential([Input("in", shape=(64,)), FxDense("fc1", weight=w1),
                          FxLIF("lif1", shape=(300,), vth=200), FxDense("fc2", weight=w2),
                          FxLIF("lif2", shape=(10,), vth=200), Output("out")])
    calib = (rng.random((4, 8, 64)) < 0.05).astype(np.uint8)
    build = compile_model(g, "loihi1", calib=calib, objective="latency")
    build.save(tmp_path / "b.build")
    build = Build.load(tmp_path / "b.build")
    saved = json.loads((tmp_path / "b.build" / "mapping.json").read_text())
    assert saved["objective"] == "latency" and set(saved["objectives"]) == {"cores", "latency"}
    x = (rng.random((2, 8, 64)) < 0.6).astype(np.uint8)  # other rates than calibration
    rep, m = energy_report(build, x)
    assert m.to_json()["core_list"] == saved["core_list"]
    assert any("build's own placement" in n for n in rep.notes)
    rep2, m2 = energy_report(build, x, replace=True)
    assert any("re-placed" in n for n in rep2.notes)
    assert m2.rates != m.rates


def test_attention_current_travels_through_charged_relay_neurons():
    """The gated current leaves the neurocores through relay neurons (a copy of the
    synapses, graded spikes to the co-processor); gains come back on input axons."""
    from test_attention_compile import compiled

    build, x = compiled("tcsa", True, 0)
    m = json.loads(json.dumps(build.extra_files["mapping.json"]))
    relay = m["layers"]["lif1.relay"]
    assert relay["relay_of"] == "lif1"
    assert relay["neurons"] == m["layers"]["lif1"]["neurons"] == 4 * 5 * 5
    assert relay["synapses"] == m["layers"]["lif1"]["synapses"]  # the synapses, copied
    io = m["coproc_io"]
    assert io["relay_messages_per_step"] == 100 and io["relay_bits"] == 24
    # gains: t (1 element) + c (4) + s (25) reach lif1's blocks: one message each per block
    n_blocks = m["layers"]["lif1"]["blocks"]
    assert io["gain_messages_per_step"] == 30 * n_blocks
    gated = [b for b in m["blocks"] if b["layer"] == "lif1"]
    assert sum(b["usage"]["input_axons"] for b in gated) >= 30 * n_blocks
    spec = build.target
    for c in m["core_list"]:
        for r in RESOURCES:
            assert c["usage"][r] <= spec.limits.limit(r)
    assert "relay neurons" in build.report_md


def test_cli_objective_and_max_cores(tiny_files, tmp_path, capsys):
    from snncompile.cli import main

    ckpt, inputs, x, y = tiny_files
    build = tmp_path / "lat.build"
    assert main(["compile", str(ckpt), "--calib", str(inputs), "-o", str(build),
                 "--objective", "latency", "--max-cores", "64"]) == 0
    out = capsys.readouterr().out
    assert "objective latency" in out and "cores / lower bound =" in out
    rep = json.loads((build / "report.json").read_text())["mapping"]
    assert rep["objective"] == "latency" and rep["cores"] <= 64
    assert set(rep["objectives"]) == {"cores", "latency"}
    assert main(["energy", str(build), "--inputs", str(inputs), "--json",
                 str(tmp_path / "e.json")]) == 0
    notes = json.loads((tmp_path / "e.json").read_text())["notes"]
    assert any("build's own placement" in n for n in notes)
