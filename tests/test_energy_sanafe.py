"""SANA-FE backend, Loihi 2 table sources, graded-message and system-cost terms."""
import dataclasses

import numpy as np
import pytest

from snncompile.energy import estimate_energy
from snncompile.ir.graph import Graph
from snncompile.ir.nodes import Flatten, FxConv2d, FxDense, FxLIF, Input, Output
from snncompile.mapping.place import map_graph
from snncompile.backends.sim.simulator import Simulator
from snncompile.target import load_target

pytest.importorskip("sanafe")


def small():
    rng = np.random.default_rng(0)
    return Graph.sequential([
        Input("in", shape=(1, 6, 6)),
        FxConv2d("c1", weight=(2 * rng.integers(-5, 15, (3, 1, 3, 3))).astype(np.int32),
                 padding=(1, 1)),
        FxLIF("l1", shape=(3, 6, 6), du=4095, dv=0, vth=30),
        Flatten("f"),
        FxDense("d2", weight=(2 * rng.integers(-5, 15, (20, 108))).astype(np.int32)),
        FxLIF("l2", shape=(20,), du=1000, dv=0, vth=200),
        Output("out")])


@pytest.mark.parametrize("target", ["loihi1", "loihi2"])
def test_sanafe_runs_placed_build_with_our_counts(target):
    from snncompile.energy.sanafe_backend import compare_text, run_sanafe
    g, spec = small(), load_target(target)
    x = (np.random.default_rng(1).random((2, 8, 1, 6, 6)) < 0.3).astype(np.int8)
    sim = Simulator(g, spec.numerics).run(x)
    counts = dict(sim.counts)
    counts["in"] = {"spikes": int(x.sum())}
    m = map_graph(g, spec)
    ours = estimate_energy(g, m, counts, spec, samples=2, steps=8)
    sf = run_sanafe(g, m.to_json(), x, spec)
    assert sf.dynamic_j > 0 and sf.latency_per_step_s > 0
    # l1 (du = 4095, dv = 0) is exact in SANA-FE's float LIF: spikes equal ours
    assert sf.spikes["l1"] == sim.counts["l1"]["spikes"] / 2
    assert sf.spikes["l2"] == pytest.approx(sim.counts["l2"]["spikes"] / 2, rel=0.1)
    # its synaptic events into l1 equal ours (the input is the same)
    assert sf.energy_parts_j["synapse"] > 0
    assert "SANA-FE" in compare_text(ours, sf)


def test_loihi2_constants_carry_sources():
    text = open(load_target("loihi2").energy.source).read()
    assert "lava-dl" in text and "PilotNet" in text
    e = load_target("loihi2").energy
    assert e.static_power_w == pytest.approx(0.232, rel=0.01)
    assert "synop_j" in e.estimates  # Loihi 1 figures reused: flagged


def test_graded_messages_cost_more_with_width():
    rng = np.random.default_rng(0)
    spec = load_target("loihi2")
    out = []
    for bits in (8, 24):
        g = Graph.sequential([
            Input("in", shape=(10,)), FxDense("d1", weight=rng.integers(1, 20, (10, 10))),
            FxLIF("l1", shape=(10,)),
            FxDense("d2", weight=rng.integers(1, 20, (5, 10)), num_message_bits=bits),
            FxLIF("l2", shape=(5,)), Output("o")])
        m = map_graph(g, spec)
        counts = {"samples": 1, "steps": 4, "in": {"spikes": 10}, "d1": {"synops": 100},
                  "l1": {"spikes": 20, "neuron_updates": 40}, "d2": {"synops": 100},
                  "l2": {"spikes": 3, "neuron_updates": 20}}
        out.append(estimate_energy(g, m, counts, spec).per_layer["l1"]["messages"])
    assert out[1] > out[0] > 0


def test_system_cost_term_appears():
    g = Graph.sequential([Input("in", shape=(4,)), FxDense("d", weight=np.ones((3, 4), int)),
                          FxLIF("l", shape=(3,)), Output("o")])
    spec = load_target("loihi1")
    counts = {"samples": 1, "steps": 5, "in": {"spikes": 4}, "d": {"synops": 12},
              "l": {"spikes": 1, "neuron_updates": 15}}
    m = map_graph(g, spec)
    base = estimate_energy(g, m, counts, spec)
    e = dataclasses.replace(spec.energy, system_step_j=1e-6, system_step_s=1e-5)
    r = estimate_energy(g, m, counts, dataclasses.replace(spec, energy=e))
    assert base.per_event["system"] == 0
    assert r.per_event["system"] == pytest.approx(5e-6)
    assert r.latency_parts_s["system_s"] == 1e-5
    assert r.latency_per_step_s == pytest.approx(base.latency_per_step_s + 1e-5)


def test_sanafe_runs_a_conv1d_build_with_our_spikes():
    """A Conv1d-fed layer (tiles of its (O, 1, L') view, edges of the height-1 conv):
    with du = 4095, dv = 0 SANA-FE's float LIF is exact, so its spikes equal ours."""
    from snncompile.energy.sanafe_backend import run_sanafe
    from snncompile.ir.nodes import FxConv1d
    rng = np.random.default_rng(2)
    g = Graph.sequential([
        Input("in", shape=(2, 12)),
        FxConv1d("c1", weight=(2 * rng.integers(-5, 15, (3, 2, 1, 3))).astype(np.int32),
                 stride=(1, 2), padding=(0, 1)),
        FxLIF("l1", shape=(3, 6), du=4095, dv=0, vth=30),
        Flatten("f"),
        FxDense("d2", weight=(2 * rng.integers(-5, 15, (5, 18))).astype(np.int32)),
        FxLIF("l2", shape=(5,), du=4095, dv=0, vth=100),
        Output("out")])
    spec = load_target("loihi2")
    x = (np.random.default_rng(3).random((2, 8, 2, 12)) < 0.4).astype(np.int8)
    sim = Simulator(g, spec.numerics).run(x)
    sf = run_sanafe(g, map_graph(g, spec).to_json(), x, spec)
    assert sim.counts["l1"]["spikes"] > 0
    for layer in ("l1", "l2"):
        assert sf.spikes[layer] == sim.counts[layer]["spikes"] / 2, layer


@pytest.mark.parametrize("target", ["loihi1", "loihi2"])
def test_sanafe_runs_a_bias_input_build_with_our_spikes(target):
    """A bias-encoded input (lava-dl netx's PilotNet LIF: the frame is the input layer's
    bias_mant): the layer integrates (bias_mant + frame) << bias_exp in SANA-FE too, the
    frame held for the input steps and removed for the drain; with du = 4095, dv = 0
    SANA-FE's float LIF is exact, so every layer's spikes equal the simulator's."""
    from snncompile.energy.sanafe_backend import run_sanafe
    rng = np.random.default_rng(4)
    g = Graph.sequential([
        Input("in", shape=(2, 5, 5), encoding="bias", bits=8),
        FxLIF("l0", shape=(2, 5, 5), du=4095, dv=0, vth=40, bias_exp=3),
        FxConv2d("c1", weight=(2 * rng.integers(-5, 15, (3, 2, 3, 3))).astype(np.int32)),
        FxLIF("l1", shape=(3, 3, 3), du=4095, dv=0, vth=30),
        Flatten("f"),
        FxDense("d2", weight=(2 * rng.integers(-5, 15, (6, 27))).astype(np.int32)),
        FxLIF("l2", shape=(6,), du=4095, dv=0, vth=60),
        Output("out")])
    spec = load_target(target)
    x = np.repeat(rng.integers(-20, 100, (2, 1, 2, 5, 5)), 10, axis=1).astype(np.int32)
    sim = Simulator(g, spec.numerics).run(x)
    sf = run_sanafe(g, map_graph(g, spec).to_json(), x, spec)
    assert sim.counts["l2"]["spikes"] > 0
    for layer in ("l0", "l1", "l2"):
        assert sf.spikes[layer] == sim.counts[layer]["spikes"] / 2, layer
    assert sf.steps_run == 10 + 2 and sf.dynamic_j > 0


def test_sanafe_refuses_a_core_fuller_than_it_simulates():
    """SANA-FE 2.2.9 holds at most 1024 neurons per core (1025 fail inside it with a vector
    range error, whatever max_neurons_supported says): refused up front, in one line."""
    from snncompile.energy.sanafe_backend import run_sanafe
    from snncompile.errors import UnsupportedError
    g = Graph.sequential([Input("in", shape=(8,)), FxDense("d", weight=np.ones((1025, 8), int)),
                          FxLIF("l", shape=(1025,)), Output("o")])
    spec = load_target("loihi2")
    m = map_graph(g, spec)
    assert m.n_cores == 1
    x = np.ones((1, 2, 8), np.int8)
    with pytest.raises(UnsupportedError, match="holds 1025 neurons.*at most 1024") as info:
        run_sanafe(g, m.to_json(), x, spec)
    assert "\n" not in str(info.value)
