"""`EnergyReport`: the result of `estimate_energy`, as JSON, a text table and a bar chart."""
from __future__ import annotations

from dataclasses import dataclass, field

#: Event types of the breakdown, in report order.
EVENTS = ("synops", "neuron_active", "neuron_inactive", "spikes_out", "messages", "hops",
          "chip_hops", "coproc", "system", "static")


@dataclass
class EnergyReport:
    """Energy and latency of one inference (one sample of `steps` time steps).

    `per_layer[layer][event]` is in joules per inference; `events[layer][event]` counts the
    events per inference. `energy_per_inference_j` is, by construction, the sum of every
    entry of `per_layer` (and of `per_event`); `dynamic_j` is that sum without `static`.
    """

    target: str
    energy_table: str  # file the energy constants came from
    samples: int
    steps: int
    energy_per_inference_j: float
    dynamic_j: float
    static_j: float
    latency_per_step_s: float
    latency_per_inference_s: float
    edp_js: float  # energy-delay product per inference
    cores: int
    chips: int
    per_layer: dict[str, dict[str, float]]
    per_event: dict[str, float]
    events: dict[str, dict[str, float]]
    latency_parts_s: dict[str, float]  # busiest core, route, barrier (per step)
    busiest_core: int
    ann: dict[str, float]
    estimates: list[str] = field(default_factory=list)  # energy keys that are estimates
    notes: list[str] = field(default_factory=list)  # approximations made

    def to_json(self) -> dict:
        def f(x):
            return float(x)
        return {
            "target": self.target,
            "energy_table": self.energy_table,
            "samples": int(self.samples),
            "steps": int(self.steps),
            "energy_per_inference_j": f(self.energy_per_inference_j),
            "dynamic_j": f(self.dynamic_j),
            "static_j": f(self.static_j),
            "latency_per_step_s": f(self.latency_per_step_s),
            "latency_per_inference_s": f(self.latency_per_inference_s),
            "edp_js": f(self.edp_js),
            "cores": int(self.cores),
            "chips": int(self.chips),
            "busiest_core": int(self.busiest_core),
            "latency_parts_s": {k: f(v) for k, v in self.latency_parts_s.items()},
            "per_layer": {k: {e: f(v) for e, v in d.items()} for k, d in self.per_layer.items()},
            "per_event": {k: f(v) for k, v in self.per_event.items()},
            "events": {k: {e: f(v) for e, v in d.items()} for k, d in self.events.items()},
            "ann": {k: f(v) for k, v in self.ann.items()},
            "estimates": list(self.estimates),
            "notes": list(self.notes),
        }

    def table(self) -> str:
        """Readable summary: totals, then joules per layer and event type."""
        from snncompile.report.compile import plural
        lines = [
            f"target {self.target} ({self.energy_table}); {plural(self.cores, 'core')}, "
            f"{plural(self.chips, 'chip')}; {plural(self.steps, 'step')} per inference, "
            f"mean over {plural(self.samples, 'sample')}",
            f"energy per inference {_eng(self.energy_per_inference_j, 'J')} "
            f"(dynamic {_eng(self.dynamic_j, 'J')}, static {_eng(self.static_j, 'J')})",
            f"latency {_eng(self.latency_per_step_s, 's')}/step, "
            f"{_eng(self.latency_per_inference_s, 's')}/inference; "
            f"EDP {self.edp_js:.3e} J*s",
        ]
        w = {e: max(11, len(e) + 2) for e in EVENTS}
        head = f"{'layer':<14}" + "".join(f"{e:>{w[e]}}" for e in EVENTS) + f"{'total':>11}"
        lines.append(head)
        for layer, d in self.per_layer.items():
            lines.append(f"{layer:<14}" + "".join(f"{_eng(d.get(e, 0.0), 'J'):>{w[e]}}"
                                                  for e in EVENTS)
                         + f"{_eng(sum(d.values()), 'J'):>11}")
        lines.append(f"{'total':<14}"
                     + "".join(f"{_eng(self.per_event.get(e, 0.0), 'J'):>{w[e]}}"
                               for e in EVENTS)
                     + f"{_eng(self.energy_per_inference_j, 'J'):>11}")
        a = self.ann
        lines.append(f"ANN comparison (Horowitz 2014 E_MAC/E_AC): ANN "
                     f"{_eng(a['ann_j'], 'J')}, SNN ops {_eng(a['snn_ops_j'], 'J')} "
                     f"(ANN / SNN ops = {a['ann_over_snn']:.2f})")
        if self.estimates:
            lines.append("estimates (not published figures): " + ", ".join(self.estimates))
        if self.notes:
            lines.append("notes (approximations in these numbers):")
            lines += [f"  - {n}" for n in self.notes]
        return "\n".join(lines)

    def plot(self, path, model: str = "") -> None:
        """Energy chart (PNG): dynamic energy per layer stacked by event type, and dynamic
        against static apart; fixed colours per event (snncompile.report.plots), the title names
        `model`."""
        from snncompile.report.plots import energy_figure, save_png

        save_png(energy_figure(self.to_json(), model=model), path)


def _eng(x: float, unit: str) -> str:
    """Engineering notation: 1.23 uJ."""
    if x == 0:
        return f"0 {unit}"
    for scale, prefix in ((1, ""), (1e-3, "m"), (1e-6, "u"), (1e-9, "n"), (1e-12, "p"),
                          (1e-15, "f")):
        if abs(x) >= scale:
            return f"{x / scale:.3g} {prefix}{unit}"
    return f"{x:.3g} {unit}"
