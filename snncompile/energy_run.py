"""Glue for `snncompile energy`: simulate, count, map, estimate."""
from __future__ import annotations

import numpy as np

from .build import Build
from .energy import estimate_energy
from .passes.place import map_graph
from .pipeline import firing_rates
from .sim.simulator import Simulator
from .target import load_target


def energy_report(build: Build, inputs: np.ndarray, energy_table: str | None = None,
                  chips: int | None = None):
    """Return (EnergyReport, Mapping) for `inputs` run on the build's simulator."""
    spec = build.target
    if energy_table:
        spec = load_target(build.target.path, energy=energy_table)
    sim = Simulator(build.graph, spec.numerics).run(inputs, progress=True)
    counts = dict(sim.counts)
    inp = build.graph.input_node()
    # bias frames are written into the input layer's bias_mant, not sent as spikes
    counts[inp.name] = {"spikes": 0 if inp.is_bias else int(np.count_nonzero(inputs))}
    if chips is None:
        chips = build.report.get("mapping", {}).get("chips")
    mapping = map_graph(build.graph, spec, chips=chips,
                        rates=firing_rates(build.graph, sim, inputs))
    report = estimate_energy(build.graph, mapping, counts, spec, samples=sim.samples,
                             steps=sim.steps)
    return report, mapping


def sanafe_compare(build: Build, inputs: np.ndarray, report, mapping, energy_table=None,
                   max_samples: int | None = None):
    """Run the placed network through SANA-FE; return (SanafeResult, comparison text).

    SANA-FE gets the placement `report` priced (`mapping`), so both price the same one.
    """
    from .energy.sanafe_backend import compare_text, run_sanafe

    spec = build.target
    if energy_table:
        spec = load_target(build.target.path, energy=energy_table)
    sf = run_sanafe(build.graph, mapping.to_json(), inputs, spec, max_samples=max_samples)
    return sf, compare_text(report, sf)
