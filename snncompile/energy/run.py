"""Glue for `snncompile energy`: simulate, count, map, estimate."""
from __future__ import annotations

import numpy as np

from snncompile.backends import get_backend
from snncompile.build import Build
from snncompile.energy import estimate_energy
from snncompile.errors import InputFileError
from snncompile.mapping.place import Mapping, map_graph
from snncompile.target import load_target


def energy_report(build: Build, inputs: np.ndarray, energy_table: str | None = None,
                  chips: int | None = None, replace: bool = False):
    """Return (EnergyReport, Mapping) for `inputs` run on the build's simulator.

    The build's own placement (mapping.json, as compiled) is priced, unless `chips` or
    `replace` asks to re-place: then the network is mapped again, with the build's
    objective, weighted by the firing rates of `inputs`."""
    return price(build, count_events(build, inputs, energy_table), energy_table, chips,
                 replace)


def count_events(build: Build, inputs: np.ndarray, energy_table: str | None = None,
                 progress: bool = True) -> dict:
    """What pricing needs of a run of `inputs`, as integers that add up over shards (see
    `merge_events`): {"samples", "steps", "counts": {node: {event: n}}, "active":
    {node: [nonzero, size]}} (`active`: nonzero values per recorded node and its size, the
    firing rates that a re-placement weighs)."""
    sim = get_backend("sim").run(build.graph, inputs, numerics=_spec(build, energy_table).numerics,
                                 progress=progress)
    counts = {n: {k: int(v) for k, v in c.items()} for n, c in sim.counts.items()}
    inp = build.graph.input_node()
    # bias frames are written into the input layer's bias_mant, not sent as spikes
    counts[inp.name] = {"spikes": 0 if inp.is_bias else int(np.count_nonzero(inputs))}
    active = {inp.name: [int(np.count_nonzero(inputs)), int(inputs.size)]}
    for name, values in sim.spikes.items():
        active[name] = [int(np.count_nonzero(values)), int(values.size)]
    return {"samples": int(sim.samples), "steps": int(sim.steps), "counts": counts,
            "active": active}


def merge_events(parts: list[dict]) -> dict:
    """The events of several runs of the same build and step count, summed (exact:
    integers), as `count_events` of their concatenated inputs gives them."""
    out = {"samples": 0, "steps": parts[0]["steps"], "counts": {}, "active": {}}
    for part in parts:
        out["samples"] += part["samples"]
        for name, c in part["counts"].items():
            row = out["counts"].setdefault(name, {})
            for key, n in c.items():
                row[key] = row.get(key, 0) + n
        for name, (nz, size) in part["active"].items():
            a = out["active"].setdefault(name, [0, 0])
            a[0] += nz
            a[1] += size
    return out


def price(build: Build, events: dict, energy_table: str | None = None,
          chips: int | None = None, replace: bool = False):
    """(EnergyReport, Mapping) of `events` (`count_events`) on the build's placement, or
    re-placed (`chips`, `replace`) with the events' firing rates."""
    spec = _spec(build, energy_table)
    summary = build.report.get("mapping", {})
    if chips is None and not replace and "mapping.json" in (build.members or {}):
        mapping, placed = build_mapping(build), True
    else:
        placed = False
        if chips is None:
            chips = summary.get("chips")
        rates = {n: nz / size if size else 0.0 for n, (nz, size) in events["active"].items()}
        mapping = map_graph(build.graph, spec, chips=chips, rates=rates,
                            objective=summary.get("objective", "cores"))
    report = estimate_energy(build.graph, mapping, events["counts"], spec,
                             samples=events["samples"], steps=events["steps"])
    report.notes.append(
        f"priced the build's own placement (mapping.json, objective {mapping.objective})"
        if placed else
        f"re-placed for these inputs' firing rates (objective {mapping.objective}, "
        f"{mapping.chips} chip(s)); the build's mapping.json was not used")
    return report, mapping


def _spec(build: Build, energy_table: str | None):
    return load_target(build.target.path, energy=energy_table) if energy_table else build.target


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

    spec = _spec(build, energy_table)
    sf = run_sanafe(build.graph, mapping.to_json(), inputs, spec, max_samples=max_samples)
    return sf, compare_text(report, sf)
