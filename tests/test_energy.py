"""Energy / latency model (energy/model.py, energy/report.py) and the target energy tables."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from snncompile.energy import E_AC_J, E_MAC_J, EVENTS, estimate_energy
from snncompile.errors import InputFileError
from snncompile.ir.graph import Graph
from snncompile.ir.nodes import Flatten, FxConv2d, FxDense, FxLIF, Input, Output
from snncompile.mapping.place import map_graph
from snncompile.target import load_target

LOIHI1 = load_target("loihi1")


def tiny(encoding="spikes"):
    """Input(4) -> FxDense(2 x 4, all non-zero) -> FxLIF(2): one core at tile (0, 0)."""
    return Graph.sequential([
        Input("in", shape=(4,), encoding=encoding, bits=1 if encoding == "spikes" else 8),
        FxDense("fc", weight=np.full((2, 4), 3, np.int32)),
        FxLIF("lif", shape=(2,)),
        Output("out"),
    ])


COUNTS = {"fc": {"synops": 10},
          "lif": {"spikes": 3, "neuron_updates": 20, "active_updates": 8},
          "samples": 1, "steps": 10}


def test_hand_counted_tiny_case():
    g = tiny()
    m = map_graph(g, LOIHI1)
    assert m.n_cores == 1 and m.cores[0].tile == (0, 0)
    r = estimate_energy(g, m, COUNTS, LOIHI1)
    pj = 1e-12
    # Davies 2018 Table 2: 23.6 pJ/synop, 81 / 52 pJ active / inactive update, 1.7 pJ/message
    assert r.per_layer["lif"]["synops"] == pytest.approx(10 * 23.6 * pj)
    assert r.per_layer["lif"]["neuron_active"] == pytest.approx(8 * 81 * pj)
    assert r.per_layer["lif"]["neuron_inactive"] == pytest.approx(12 * 52 * pj)
    assert r.per_layer["lif"]["messages"] == 0  # lif feeds no core
    # input spikes = synops * inputs / synapses = 10 * 4 / 8 = 5, one message each, 0 hops
    assert r.events["in"]["spikes"] == pytest.approx(5)
    assert r.per_layer["in"]["messages"] == pytest.approx(5 * 1.7 * pj)
    assert r.per_layer["in"]["hops"] == 0
    dynamic = (10 * 23.6 + 8 * 81 + 12 * 52 + 5 * 1.7) * pj
    assert r.dynamic_j == pytest.approx(dynamic)
    # per step: 1 synop x 3.5 ns + 0.8 x 8.4 ns + 1.2 x 5.3 ns on the only core,
    # barrier 113 ns (one tile), no route time
    step = (3.5 + 0.8 * 8.4 + 1.2 * 5.3 + 113) * 1e-9
    assert r.latency_per_step_s == pytest.approx(step)
    assert r.latency_per_inference_s == pytest.approx(10 * step)
    assert r.static_j == pytest.approx(0.029 * 10 * step)  # Blouw 2019 idle power, one chip
    assert r.energy_per_inference_j == pytest.approx(dynamic + 0.029 * 10 * step)
    assert r.edp_js == pytest.approx(r.energy_per_inference_j * 10 * step)


def test_totals_equal_the_breakdown():
    rng = np.random.default_rng(2)
    g = Graph.sequential([
        Input("in", shape=(2, 16, 16)),
        FxConv2d("c1", weight=rng.integers(1, 9, (8, 2, 3, 3)), padding=(1, 1)),
        FxLIF("lif1", shape=(8, 16, 16)),
        Flatten("flat"),
        FxDense("d1", weight=rng.integers(-5, 5, (64, 2048))),
        FxLIF("lif2", shape=(64,)),
        FxDense("d2", weight=rng.integers(1, 5, (10, 64))),
        FxLIF("lif3", shape=(10,)),
        Output("out"),
    ])
    m = map_graph(g, LOIHI1)
    counts = {"c1": {"synops": 91234}, "lif1": {"spikes": 5123, "neuron_updates": 2048 * 30},
              "d1": {"synops": 301234}, "lif2": {"spikes": 333, "neuron_updates": 64 * 30},
              "d2": {"synops": 3330}, "lif3": {"spikes": 17, "neuron_updates": 300},
              "samples": 3, "steps": 10}
    for spec in (LOIHI1, load_target("loihi2"), load_target("loihi1-sanafe")):
        r = estimate_energy(g, m, counts, spec)
        layer_sum = sum(sum(d.values()) for d in r.per_layer.values())
        assert r.energy_per_inference_j == pytest.approx(layer_sum, rel=1e-12)
        assert r.energy_per_inference_j == pytest.approx(sum(r.per_event.values()), rel=1e-12)
        assert r.dynamic_j + r.static_j == pytest.approx(r.energy_per_inference_j, rel=1e-12)
        assert r.static_j == pytest.approx(
            spec.energy.static_power_w * m.chips * r.latency_per_inference_s)
        assert set(EVENTS) == set(r.per_event)
        json.loads(json.dumps(r.to_json()))
        assert "lif2" in r.table()


def test_counts_are_per_inference():
    g = tiny()
    m = map_graph(g, LOIHI1)
    doubled = {k: ({kk: 2 * vv for kk, vv in v.items()} if isinstance(v, dict) else v)
               for k, v in COUNTS.items()} | {"samples": 2}
    a = estimate_energy(g, m, COUNTS, LOIHI1)
    b = estimate_energy(g, m, doubled, LOIHI1)
    assert b.energy_per_inference_j == pytest.approx(a.energy_per_inference_j)


def test_active_updates_estimated_when_not_given():
    g = tiny()
    m = map_graph(g, LOIHI1)
    counts = dict(COUNTS, lif={"spikes": 3, "neuron_updates": 20})
    r = estimate_energy(g, m, counts, LOIHI1)
    active = 20 * (1 - math.exp(-10 / 20))
    assert r.events["lif"]["active_updates"] == pytest.approx(active)
    assert r.per_layer["lif"]["neuron_inactive"] == pytest.approx((20 - active) * 52e-12)
    assert any("active neuron updates" in n for n in r.notes)


def test_sanafe_table_and_conv_synops():
    g = Graph.sequential([Input("in", shape=(1, 8, 8)),
                          FxConv2d("c", weight=np.ones((4, 1, 3, 3), np.int32), padding=(1, 1)),
                          FxLIF("lif", shape=(4, 8, 8)), Output("out")])
    m = map_graph(g, LOIHI1)
    counts = {"c": {"synops": 1000}, "lif": {"spikes": 10, "neuron_updates": 2560},
              "samples": 1, "steps": 10}
    swapped = load_target("loihi1", energy="loihi1-sanafe")
    r = estimate_energy(g, m, counts, swapped)
    assert r.per_layer["lif"]["synops"] == pytest.approx(1000 * 24.0e-12)  # SANA-FE conv
    assert r.per_layer["lif"]["spikes_out"] == pytest.approx(10 * 69.3e-12)
    assert r.energy_table.endswith("loihi1-sanafe.toml")


def test_ann_comparison_follows_the_literature():
    g = tiny(encoding="graded")
    m = map_graph(g, LOIHI1)
    r = estimate_energy(g, m, COUNTS, LOIHI1)
    # one synapse layer of 8 connections; encoding layer counts T x dense ops MACs
    assert r.ann["ann_j"] == pytest.approx(8 * E_MAC_J)
    assert r.ann["snn_ops_j"] == pytest.approx(10 * 8 * E_MAC_J)
    spikes_in = estimate_energy(tiny(), m, COUNTS, LOIHI1)
    assert spikes_in.ann["snn_ops_j"] == pytest.approx(10 * E_AC_J)  # synops x E_AC


def test_missing_counts_are_named():
    g = tiny()
    m = map_graph(g, LOIHI1)
    with pytest.raises(InputFileError, match="'fc' lacks 'synops'"):
        estimate_energy(g, m, {"lif": COUNTS["lif"], "samples": 1, "steps": 10}, LOIHI1)
    with pytest.raises(InputFileError, match="samples"):
        estimate_energy(g, m, {k: v for k, v in COUNTS.items() if k != "samples"}, LOIHI1)


def test_plot_writes_png(tmp_path):
    g = tiny()
    r = estimate_energy(g, map_graph(g, LOIHI1), COUNTS, LOIHI1)
    path = tmp_path / "energy.png"
    r.plot(path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_target_tables_flag_estimates():
    l1, l2 = LOIHI1, load_target("loihi2")
    assert l1.limits.neurons == 1024 and l1.limits.synapse_bits == 1_048_576
    assert l1.chip.cores_per_chip == 128 and l1.chip.x86_cores == 3
    assert l2.chip.x86_cores == 6
    assert "synop_j" not in l1.energy.estimates  # published (Davies 2018)
    # Loihi 2 has no public per-operation energies: every per-event key is an estimate;
    # static power is derived from lava-dl's PilotNet Loihi 2 measurement, so it is not
    from dataclasses import fields

    keys = {f.name for f in fields(l2.energy)} - {
        "estimates", "source", "synop_sparse_j", "static_power_w", "system_step_j",
        "system_step_s"}
    assert keys <= l2.energy.estimates
    assert "static_power_w" not in l2.energy.estimates
    assert {"neurons", "input_axons", "output_axons"} <= l2.limits.estimates


def test_energy_table_file_without_energy_section(tmp_path):
    path = tmp_path / "e.toml"
    path.write_text("[numerics]\n")
    with pytest.raises(InputFileError, match="no \\[energy\\]"):
        load_target("loihi1", energy=path)
