"""Glue for `snncompile energy`: simulate, count, map, estimate."""
from __future__ import annotations

import numpy as np

from snncompile.backends import get_backend
from snncompile.build import Build
from snncompile.energy import estimate_energy
from snncompile.errors import InputFileError
from snncompile.mapping.place import Mapping, map_graph
from snncompile.pipeline import firing_rates
from snncompile.target import load_target


def energy_report(build: Build, inputs: np.ndarray, energy_table: str | None = None,
                  chips: int | None = None, replace: bool = False):
    """Return (EnergyReport, Mapping) for `inputs` run on the build's simulator.

    The build's own placement (mapping.json, as compiled) is priced, unless `chips` or
    `replace` asks to re-place: then the network is mapped again, with the build's
    objective, weighted by the firing rates of `inputs`."""
    spec = build.target
    if energy_table:
        spec = load_target(build.target.path, energy=energy_table)
    # the simulator counts events per node (Run.counts)
    sim = get_backend("sim").run(build.graph, inputs, numerics=spec.numerics, progress=True)
    counts = dict(sim.counts)
    inp = build.graph.input_node()
    # bias frames are written into the input layer's bias_mant, not sent as spikes
    counts[inp.name] = {"spikes": 0 if inp.is_bias else int(np.count_nonzero(inputs))}
    summary = build.report.get("mapping", {})
    if chips is None and not replace and "mapping.json" in (build.members or {}):
        mapping, placed = build_mapping(build), True
    else:
        placed = False
        if chips is None:
            chips = summary.get("chips")
        mapping = map_graph(build.graph, spec, chips=chips,
                            rates=firing_rates(build.graph, sim, inputs),
                            objective=summary.get("objective", "cores"))
    report = estimate_energy(build.graph, mapping, counts, spec, samples=sim.samples,
                             steps=sim.steps)
    report.notes.append(
        f"priced the build's own placement (mapping.json, objective {mapping.objective})"
        if placed else
        f"re-placed for these inputs' firing rates (objective {mapping.objective}, "
        f"{mapping.chips} chip(s)); the build's mapping.json was not used")
    return report, mapping


def build_mapping(build: Build) -> Mapping:
    """The placement the build was compiled with (mapping.json), checked against its graph."""
    import json

    path = build.member("mapping.json")
    try:
        doc = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputFileError(f"{path}: not JSON ({exc}); recompile") from None
    if not isinstance(doc, dict):
        raise InputFileError(f"{path}: not a mapping (a JSON object); recompile")
    mapping = Mapping.from_json(doc, str(path))
    lifs = [n for n in build.graph.order() if n in mapping.layers]
    missing = [n for n in build.graph.order()
               if build.graph.node(n).is_neuron
               and n not in mapping.layers]
    if missing or not lifs:
        raise InputFileError(f"{path}: has no layer {', '.join(missing) or 'at all'} of the "
                             "build's graph; recompile")
    return mapping


def sanafe_compare(build: Build, inputs: np.ndarray, report, mapping, energy_table=None,
                   max_samples: int | None = None):
    """Run the placed network through SANA-FE; return (SanafeResult, comparison text).

    SANA-FE gets the placement `report` priced (`mapping`), so both price the same one.
    """
    from snncompile.energy.sanafe_backend import compare_text, run_sanafe

    spec = build.target
    if energy_table:
        spec = load_target(build.target.path, energy=energy_table)
    sf = run_sanafe(build.graph, mapping.to_json(), inputs, spec, max_samples=max_samples)
    return sf, compare_text(report, sf)
