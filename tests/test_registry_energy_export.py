"""The energy, SANA-FE and exporter rule tables (energy/model.py ENERGY,
energy/sanafe_backend.py SANAFE, formats/netx/write.py NETX_EXPORT, formats/nir/write.py
NIR_EXPORT): which node types each table holds, the one-line refusal of a node type a table
lacks, and energy numbers pinned from the code before the tables existed."""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import pytest

from snncompile.energy import estimate_energy
from snncompile.energy.model import ENERGY
from snncompile.errors import UnsupportedError
from snncompile.formats.netx.write import NETX_EXPORT, export_netx, supported
from snncompile.formats.nir.write import NIR_EXPORT, export_nir
from snncompile.ir import (LI, LIF, AvgPool2d, Conv1d, Conv2d, Dense, Flatten, FxCoproc,
                           FxCoprocOut, FxConv1d, FxConv2d, FxDelay, FxDense, FxGate, FxLI,
                           FxLIF, FxSigmaDelta, Input, Output, SumPool2d, FxRecDense, RecDense)
from snncompile.ir.graph import Graph
from snncompile.ir.nodes import FIXED_TYPES, Node
from snncompile.mapping.place import map_graph
from snncompile.target import load_target


# ------------------------------------------------------------------ node types per table
def test_each_table_holds_the_node_types_its_stage_handles():
    assert set(ENERGY.types) == {Input, FxLIF, FxSigmaDelta, FxDense, FxConv2d, FxCoproc,
                                 Flatten, Output, FxGate, FxDelay, FxCoprocOut, FxLI,
                                 FxRecDense}
    assert set(NETX_EXPORT.types) == {Input, FxDense, FxConv2d, FxConv1d, FxLIF,
                                      FxSigmaDelta, Flatten, Output}
    assert set(NIR_EXPORT.types) == {Input, Dense, Conv2d, Conv1d, SumPool2d, AvgPool2d,
                                     Flatten, LIF, Output, LI, RecDense}
    pytest.importorskip("sanafe")
    from snncompile.energy.sanafe_backend import SANAFE
    assert set(SANAFE.types) == {Input, FxDense, FxConv2d, FxConv1d, FxLIF, Flatten, Output}


def test_every_fixed_node_type_has_an_energy_rule():
    """A fixed-stage node type the simulator can count must say what its counts cost."""
    missing = [t.__name__ for t in FIXED_TYPES if not ENERGY.supports(t)]
    assert not missing, f"no ENERGY rule for {missing} (energy/model.py)"


def test_exporters_hold_only_their_stage_and_say_so():
    assert all(t.stage in ("fixed", "both") for t in NETX_EXPORT.types)
    assert all(t.stage in ("float", "both") for t in NIR_EXPORT.types)
    assert AvgPool2d in NIR_EXPORT.types and NIR_EXPORT.get(AvgPool2d) is not \
        NIR_EXPORT.get(SumPool2d)         # its own writer, not the inherited SumPool2d one
    text = supported()
    assert all(t.__name__ in text for t in NETX_EXPORT.types)


# ------------------------------------------------------------------ refusals
@dataclass
class FxOdd(Node):
    """A fixed-stage node type no table knows (identity on its input)."""
    stage: ClassVar[str] = "fixed"

    def out_shape(self, in_shapes):
        return self._one(in_shapes)


@dataclass
class Odd(FxOdd):
    """The same, float stage."""
    stage: ClassVar[str] = "float"


def _one_line(err, *parts):
    text = str(err.value)
    assert "\n" not in text, text
    for part in parts:
        assert part in text, text


def _fixed_with(odd):
    return Graph.sequential([Input("in", shape=(4,)),
                             FxDense("fc", weight=np.full((2, 4), 3, np.int32)),
                             FxLIF("lif", shape=(2,)), odd, Output("out")])


def test_energy_refuses_an_unregistered_node_type_in_one_line():
    spec = load_target("loihi1")
    plain = tiny()
    with pytest.raises(UnsupportedError) as err:
        estimate_energy(_fixed_with(FxOdd("odd")), map_graph(plain, spec), COUNTS, spec)
    _one_line(err, "odd", "FxOdd", "energy counts", "FxLIF", "FxDense")


def test_netx_export_refuses_an_unregistered_node_type_in_one_line(tmp_path):
    with pytest.raises(UnsupportedError) as err:
        export_netx(_fixed_with(FxOdd("odd")), tmp_path / "x.net")
    _one_line(err, "odd", "FxOdd", "netx export", "FxSigmaDelta", "single chain")
    assert not (tmp_path / "x.net").exists()


def test_nir_export_refuses_an_unregistered_node_type_in_one_line():
    graph = Graph.sequential([Input("in", shape=(4,)), Dense("fc", weight=np.ones((2, 4))),
                              LIF("lif", shape=(2,)), Odd("odd"), Output("out")])
    with pytest.raises(UnsupportedError) as err:
        export_nir(graph)
    _one_line(err, "odd", "Odd", "NIR export", "LIF", "Build.float_graph")
    with pytest.raises(UnsupportedError) as err:      # a fixed graph: FxDense has no writer
        export_nir(tiny())
    _one_line(err, "fc: FxDense", "NIR export")


def test_sanafe_refuses_an_unregistered_node_type_in_one_line():
    pytest.importorskip("sanafe")
    from snncompile.energy.sanafe_backend import run_sanafe
    graph = Graph.sequential([Input("in", shape=(4,)),
                              FxDense("fc", weight=np.ones((3, 4), np.int32)),
                              FxSigmaDelta("sd", shape=(3,)), Output("out")])
    spec = load_target("loihi1")
    with pytest.raises(UnsupportedError) as err:
        run_sanafe(graph, {}, np.zeros((1, 2, 4)), spec)
    _one_line(err, "--backend sanafe", "sd: FxSigmaDelta", "SANA-FE export", "FxLIF")


# ------------------------------------------------------------------ energy unchanged
def tiny():
    return Graph.sequential([Input("in", shape=(4,)),
                             FxDense("fc", weight=np.full((2, 4), 3, np.int32)),
                             FxLIF("lif", shape=(2,)), Output("out")])


COUNTS = {"fc": {"synops": 10}, "lif": {"spikes": 3, "neuron_updates": 20},
          "samples": 1, "steps": 10}


def lif_net():
    """conv -> LIF -> flatten -> dense with zero weights (sparse price) -> LIF -> graded
    dense (8-bit payload) -> LIF."""
    rng = np.random.default_rng(3)
    w = rng.integers(-5, 9, (12, 72)).astype(np.int32)
    w[:, :3] = 0
    return Graph.sequential([
        Input("in", shape=(2, 6, 4)),
        FxConv2d("c1", weight=rng.integers(1, 9, (3, 2, 3, 3)).astype(np.int32),
                 padding=(1, 1)),
        FxLIF("l1", shape=(3, 6, 4), du=1000, dv=200, vth=40),
        Flatten("f"),
        FxDense("d2", weight=w),
        FxLIF("l2", shape=(12,), du=4095, dv=0, vth=100),
        FxDense("d3", weight=rng.integers(1, 20, (4, 12)).astype(np.int32),
                num_message_bits=8),
        FxLIF("l3", shape=(4,), vth=60),
        Output("out")])


def sd_net():
    """Graded input -> delta encoder -> dense -> sigma-delta -> dense -> sigma readout."""
    rng = np.random.default_rng(4)
    return Graph.sequential([
        Input("in", shape=(5,), encoding="graded", bits=8),
        FxSigmaDelta("enc", shape=(5,), role="delta", vth=3),
        FxDense("d1", weight=rng.integers(-60, 60, (4, 5)).astype(np.int32) * 4,
                weight_exp=-2, num_weight_bits=7, sign_mode="mixed", num_message_bits=16),
        FxSigmaDelta("sd1", shape=(4,), vth=20),
        FxDense("d2", weight=rng.integers(0, 250, (2, 4)).astype(np.int32),
                num_message_bits=16),
        FxSigmaDelta("out", shape=(2,), role="sigma"), Output("o")])


LIF_COUNTS = {"in": {"spikes": 170}, "c1": {"synops": 4200},
              "l1": {"spikes": 610, "neuron_updates": 72 * 18, "active_updates": 900},
              "d2": {"synops": 5300}, "l2": {"spikes": 77, "neuron_updates": 12 * 18},
              "d3": {"synops": 300}, "l3": {"spikes": 9, "neuron_updates": 4 * 18},
              "samples": 3, "steps": 6}
SD_COUNTS = {"enc": {"spikes": 40, "neuron_updates": 70}, "d1": {"synops": 150},
             "sd1": {"spikes": 33, "neuron_updates": 56}, "d2": {"synops": 60},
             "out": {"spikes": 14, "neuron_updates": 28}, "samples": 2, "steps": 7}
CASES = {  # name: (graph, counts, target, energy table)
    "tiny_loihi1": (tiny, COUNTS, "loihi1", None),
    "lif_loihi1": (lif_net, LIF_COUNTS, "loihi1", None),
    "lif_loihi1_sanafe_table": (lif_net, LIF_COUNTS, "loihi1", "loihi1-sanafe"),
    "lif_loihi2_derived_input": (lif_net, {k: v for k, v in LIF_COUNTS.items() if k != "in"},
                                 "loihi2", None),
    "sd_loihi2": (sd_net, SD_COUNTS, "loihi2", None),
}


def _numbers(case: str) -> dict:
    make, counts, target, table = CASES[case]
    spec = load_target(target, energy=table) if table else load_target(target)
    graph = make()
    r = estimate_energy(graph, map_graph(graph, spec), counts, spec)
    return {"energy_per_inference_j": r.energy_per_inference_j, "dynamic_j": r.dynamic_j,
            "static_j": r.static_j, "latency_per_step_s": r.latency_per_step_s,
            "ann_j": r.ann["ann_j"], "snn_ops_j": r.ann["snn_ops_j"],
            **{f"row.{k}": sum(v.values()) for k, v in r.per_layer.items()},
            **{f"event.{k}": v for k, v in r.per_event.items()},
            **{f"count.{k}.{e}": n for k, d in r.events.items() for e, n in d.items()}}


# Recorded from the code before the ENERGY table (commit 4623932, estimate_energy as one
# function) by running this file's section from "energy unchanged" to here against it:
#   git archive 4623932 | tar -x -C OLD && cd OLD && PYTHONPATH=OLD python -c '
#   import re, numpy as np, pytest; from snncompile.energy import estimate_energy
#   from snncompile.ir import *; from snncompile.ir.graph import Graph
#   from snncompile.mapping.place import map_graph; from snncompile.target import load_target
#   src = open("WORKTREE/tests/test_registry_energy_export.py").read()
#   exec(re.search(r"energy unchanged\n(.*?)# Recorded", src, re.S).group(1))
#   [print(f"    {k!r}: {_numbers(k)!r},") for k in CASES]'
BEFORE = {
    'tiny_loihi1': {
        'energy_per_inference_j': 3.907917009120336e-08, 'dynamic_j': 1.5127122173666761e-09,
        'static_j': 3.7566457873836687e-08, 'latency_per_step_s': 1.2953950990978168e-07,
        'ann_j': 3.68e-11, 'snn_ops_j': 9e-12, 'row.in': 8.5e-12,
        'row.lif': 3.907067009120336e-08, 'event.synops': 2.36e-10,
        'event.neuron_active': 6.374203312655339e-10,
        'event.neuron_inactive': 6.307918861011388e-10, 'event.spikes_out': 0.0,
        'event.messages': 8.5e-12, 'event.hops': 0.0, 'event.chip_hops': 0.0,
        'event.coproc': 0.0, 'event.system': 0.0, 'event.static': 3.7566457873836687e-08,
        'count.in.spikes': 5.0, 'count.in.messages': 5.0, 'count.in.hops_ew': 0.0,
        'count.in.hops_ns': 0.0, 'count.in.chip_hops': 0.0, 'count.lif.synops': 10.0,
        'count.lif.neuron_updates': 20.0, 'count.lif.active_updates': 7.8693868057473315,
        'count.lif.inactive_updates': 12.130613194252668, 'count.lif.spikes': 3.0,
        'count.lif.messages': 0.0, 'count.lif.hops_ew': 0.0, 'count.lif.hops_ns': 0.0,
        'count.lif.chip_hops': 0.0,
    },
    'lif_loihi1': {
        'energy_per_inference_j': 5.978731304254033e-07, 'dynamic_j': 1.1649377320673801e-07,
        'static_j': 4.813793572186653e-07, 'latency_per_step_s': 2.7665480299923293e-06,
        'ann_j': 8.1558e-09, 'snn_ops_j': 2.9399999999999998e-09,
        'row.in': 9.633333333333334e-11, 'row.l1': 4.5839110161325147e-07,
        'row.l2': 1.1321160628734769e-07, 'row.l3': 2.6174089191470784e-08,
        'event.synops': 7.709333333333334e-08, 'event.neuron_active': 3.204586050847485e-08,
        'event.neuron_inactive': 6.883348809374175e-09, 'event.spikes_out': 0.0,
        'event.messages': 4.712305555555556e-10, 'event.hops': 0.0, 'event.chip_hops': 0.0,
        'event.coproc': 0.0, 'event.system': 0.0, 'event.static': 4.813793572186653e-07,
        'count.in.spikes': 56.666666666666664, 'count.in.messages': 56.666666666666664,
        'count.in.hops_ew': 0.0, 'count.in.hops_ns': 0.0, 'count.in.chip_hops': 0.0,
        'count.l1.synops': 1400.0, 'count.l1.neuron_updates': 432.0,
        'count.l1.active_updates': 300.0, 'count.l1.inactive_updates': 132.0,
        'count.l1.spikes': 203.33333333333334, 'count.l1.messages': 194.86111111111111,
        'count.l1.hops_ew': 0.0, 'count.l1.hops_ns': 0.0, 'count.l1.chip_hops': 0.0,
        'count.l2.synops': 1766.6666666666667, 'count.l2.neuron_updates': 72.0,
        'count.l2.active_updates': 71.99999999841134,
        'count.l2.inactive_updates': 1.5886598703218624e-09,
        'count.l2.spikes': 25.666666666666668, 'count.l2.messages': 25.666666666666668,
        'count.l2.hops_ew': 0.0, 'count.l2.hops_ns': 0.0, 'count.l2.chip_hops': 0.0,
        'count.l3.synops': 100.0, 'count.l3.neuron_updates': 24.0,
        'count.l3.active_updates': 23.627907513623775,
        'count.l3.inactive_updates': 0.37209248637622494, 'count.l3.spikes': 3.0,
        'count.l3.messages': 0.0, 'count.l3.hops_ew': 0.0, 'count.l3.hops_ns': 0.0,
        'count.l3.chip_hops': 0.0,
    },
    'lif_loihi1_sanafe_table': {
        'energy_per_inference_j': 9.946618761671903e-07, 'dynamic_j': 1.7893534613559324e-07,
        'static_j': 8.157265300315971e-07, 'latency_per_step_s': 4.688083505928718e-06,
        'ann_j': 8.1558e-09, 'snn_ops_j': 2.9399999999999998e-09,
        'row.in': 6.2899999999999996e-09, 'row.l1': 7.65331598813731e-07,
        'row.l2': 1.8046473591336528e-07, 'row.l3': 4.257554144009414e-08,
        'event.synops': 9.651000000000001e-08, 'event.neuron_active': 2.8801711666876152e-08,
        'event.neuron_inactive': 6.777451135383802e-09,
        'event.spikes_out': 1.6077599999999998e-08, 'event.messages': 3.076858333333333e-08,
        'event.hops': 0.0, 'event.chip_hops': 0.0, 'event.coproc': 0.0, 'event.system': 0.0,
        'event.static': 8.157265300315971e-07, 'count.in.spikes': 56.666666666666664,
        'count.in.messages': 56.666666666666664, 'count.in.hops_ew': 0.0,
        'count.in.hops_ns': 0.0, 'count.in.chip_hops': 0.0, 'count.l1.synops': 1400.0,
        'count.l1.neuron_updates': 432.0, 'count.l1.active_updates': 300.0,
        'count.l1.inactive_updates': 132.0, 'count.l1.spikes': 203.33333333333334,
        'count.l1.messages': 194.86111111111111, 'count.l1.hops_ew': 0.0,
        'count.l1.hops_ns': 0.0, 'count.l1.chip_hops': 0.0,
        'count.l2.synops': 1766.6666666666667, 'count.l2.neuron_updates': 72.0,
        'count.l2.active_updates': 71.99999999841134,
        'count.l2.inactive_updates': 1.5886598703218624e-09,
        'count.l2.spikes': 25.666666666666668, 'count.l2.messages': 25.666666666666668,
        'count.l2.hops_ew': 0.0, 'count.l2.hops_ns': 0.0, 'count.l2.chip_hops': 0.0,
        'count.l3.synops': 100.0, 'count.l3.neuron_updates': 24.0,
        'count.l3.active_updates': 23.627907513623775,
        'count.l3.inactive_updates': 0.37209248637622494, 'count.l3.spikes': 3.0,
        'count.l3.messages': 0.0, 'count.l3.hops_ew': 0.0, 'count.l3.hops_ns': 0.0,
        'count.l3.chip_hops': 0.0,
    },
    'lif_loihi2_derived_input': {
        'energy_per_inference_j': 3.970706244289395e-06, 'dynamic_j': 1.1652732254007189e-07,
        'static_j': 3.854178921749323e-06, 'latency_per_step_s': 2.768806696658996e-06,
        'ann_j': 8.1558e-09, 'snn_ops_j': 2.9399999999999998e-09, 'row.in': 1.19e-10,
        'row.l1': 3.2179543816837897e-06, 'row.l2': 5.73149702299104e-07,
        'row.l3': 1.7948316030650066e-07, 'event.synops': 7.709333333333334e-08,
        'event.neuron_active': 3.204586050847485e-08,
        'event.neuron_inactive': 6.883348809374175e-09, 'event.spikes_out': 0.0,
        'event.messages': 5.047798888888889e-10, 'event.hops': 0.0, 'event.chip_hops': 0.0,
        'event.coproc': 0.0, 'event.system': 0.0, 'event.static': 3.854178921749323e-06,
        'count.in.spikes': 70.0, 'count.in.messages': 70.0, 'count.in.hops_ew': 0.0,
        'count.in.hops_ns': 0.0, 'count.in.chip_hops': 0.0, 'count.l1.synops': 1400.0,
        'count.l1.neuron_updates': 432.0, 'count.l1.active_updates': 300.0,
        'count.l1.inactive_updates': 132.0, 'count.l1.spikes': 203.33333333333334,
        'count.l1.messages': 194.86111111111111, 'count.l1.hops_ew': 0.0,
        'count.l1.hops_ns': 0.0, 'count.l1.chip_hops': 0.0,
        'count.l2.synops': 1766.6666666666667, 'count.l2.neuron_updates': 72.0,
        'count.l2.active_updates': 71.99999999841134,
        'count.l2.inactive_updates': 1.5886598703218624e-09,
        'count.l2.spikes': 25.666666666666668, 'count.l2.messages': 25.666666666666668,
        'count.l2.hops_ew': 0.0, 'count.l2.hops_ns': 0.0, 'count.l2.chip_hops': 0.0,
        'count.l3.synops': 100.0, 'count.l3.neuron_updates': 24.0,
        'count.l3.active_updates': 23.627907513623775,
        'count.l3.inactive_updates': 0.37209248637622494, 'count.l3.spikes': 3.0,
        'count.l3.messages': 0.0, 'count.l3.hops_ew': 0.0, 'count.l3.hops_ns': 0.0,
        'count.l3.chip_hops': 0.0,
    },
    'sd_loihi2': {
        'energy_per_inference_j': 4.255082911202655e-07, 'dynamic_j': 7.689617547297129e-09,
        'static_j': 4.1781867357296837e-07, 'latency_per_step_s': 2.572775083577391e-07,
        'ann_j': 1.2879999999999998e-10, 'snn_ops_j': 9.45e-11, 'row.in': 0.0,
        'row.enc': 1.917885388968038e-07, 'row.sd1': 1.5595835224617444e-07,
        'row.out': 7.776139997728726e-08, 'event.synops': 2.478e-09,
        'event.neuron_active': 3.113236528657443e-09,
        'event.neuron_inactive': 2.005379018639667e-09, 'event.spikes_out': 0.0,
        'event.messages': 9.3002e-11, 'event.hops': 0.0, 'event.chip_hops': 0.0,
        'event.coproc': 0.0, 'event.system': 0.0, 'event.static': 4.1781867357296837e-07,
        'count.in.spikes': 0.0, 'count.in.messages': 0.0, 'count.in.hops_ew': 0.0,
        'count.in.hops_ns': 0.0, 'count.in.chip_hops': 0.0, 'count.enc.synops': 0.0,
        'count.enc.neuron_updates': 35.0, 'count.enc.active_updates': 0.0,
        'count.enc.inactive_updates': 35.0, 'count.enc.spikes': 20.0,
        'count.enc.messages': 20.0, 'count.enc.hops_ew': 0.0, 'count.enc.hops_ns': 0.0,
        'count.enc.chip_hops': 0.0, 'count.sd1.synops': 75.0, 'count.sd1.neuron_updates': 28.0,
        'count.sd1.active_updates': 26.07748719763362,
        'count.sd1.inactive_updates': 1.9225128023663807, 'count.sd1.spikes': 16.5,
        'count.sd1.messages': 16.5, 'count.sd1.hops_ew': 0.0, 'count.sd1.hops_ns': 0.0,
        'count.sd1.chip_hops': 0.0, 'count.out.synops': 30.0, 'count.out.neuron_updates': 14.0,
        'count.out.active_updates': 12.357531674680489,
        'count.out.inactive_updates': 1.642468325319511, 'count.out.spikes': 7.0,
        'count.out.messages': 0.0, 'count.out.hops_ew': 0.0, 'count.out.hops_ns': 0.0,
        'count.out.chip_hops': 0.0,
    },
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_energy_equals_the_numbers_recorded_before_the_table(case):
    got, want = _numbers(case), BEFORE[case]
    assert set(got) == set(want)
    for key, value in want.items():
        assert got[key] == pytest.approx(value, rel=1e-12, abs=1e-30), key
