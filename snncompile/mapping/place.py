"""Place cores on the chip mesh (and across chips) to keep spike traffic short.

Model. A chip is a `mesh_x` x `mesh_y` grid of tiles with `cores_per_tile` cores each;
several chips sit row-major on a grid `chip_grid_x` chips wide, their meshes stitched edge to
edge. A message from core A to core B costs `dx * hop_ew_j + dy * hop_ns_j` (tile distance on
the stitched grid) plus `chip_hop_j` per chip boundary crossed; cores in one tile are 0 hops
apart. The graph input enters at tile (0, 0) of chip 0 (where the host / embedded x86 cores
inject spikes).

Traffic. `split_graph` gives, per pair of blocks, how many neurons of the source block have
synapses into the destination block; each spike of such a neuron sends one message there.
Weighting by the source layer's firing rate (`rates`, spikes per neuron per step, default 1
for every layer) gives the expected messages per step between cores.

Algorithm (deterministic).
1. Greedy: cores are taken in network order (layer by layer) and laid along a serpentine
   (boustrophedon) path through the tiles of chip 0, then chip 1, ...; consecutive layers
   land next to each other.
2. Local improvement: for every core, try swapping it with each core or free slot of the
   tiles within one hop; keep a swap when it lowers the total traffic-weighted hop energy.
   At most `passes` sweeps, stopping early when a sweep changes nothing.

    >>> mapping = map_graph(graph, load_target("loihi1"), chips=1)   # doctest: +SKIP
    >>> print(mapping.table())                                        # doctest: +SKIP
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from snncompile.errors import InputFileError, ResourceLimitError, UnsupportedError
from snncompile.ir.graph import Graph
from snncompile.target import TargetSpec
from snncompile.mapping.split import RESOURCES, Block, Split, split_graph


@dataclass
class Core:
    """One neurocore in use: the blocks it holds, where it sits, how full it is."""

    index: int
    blocks: list[int]
    chip: int
    tile: tuple[int, int]  # (x, y) inside its chip
    slot: int  # core number inside the tile
    usage: dict[str, int]
    utilisation: dict[str, float]

    def to_json(self) -> dict:
        return {"index": self.index, "blocks": list(self.blocks), "chip": self.chip,
                "tile": list(self.tile), "slot": self.slot,
                "usage": dict(self.usage),
                "utilisation": {k: round(v, 4) for k, v in self.utilisation.items()}}


@dataclass
class Mapping:
    """Blocks placed on cores of one or more chips.

    `layer_traffic[layer]` holds, for a spike of *every* neuron of the layer once (divide by
    the layer's neuron count for one spike): `messages`, `hops_ew`, `hops_ns`, `chip_hops`.
    `core_of_block[b]` is the core holding block `b`.
    """

    target: str
    blocks: list[Block]
    cores: list[Core]
    chips: int
    limits: dict[str, int]
    lower_bound: dict
    layers: dict[str, dict]
    layer_traffic: dict[str, dict]
    core_of_block: list[int]
    tiles_used: int
    placement_cost: dict[str, float]
    rates: dict[str, float] = field(default_factory=dict)
    max_route: dict = field(default_factory=dict)  # longest used route (hops, seconds)
    objective: str = "cores"
    work_cap: float | None = None  # latency objective: synaptic ops per step per core
    objectives: dict = field(default_factory=dict)  # both objectives' figures (compile)
    coproc_io: dict = field(default_factory=dict)  # attention relay / gain traffic

    @property
    def core_work(self) -> list[float]:
        """Synaptic ops per step of every core (its blocks' synapses x source rates)."""
        return [float(sum(self.blocks[b].work for b in c.blocks)) for c in self.cores]

    def figures(self, spec: TargetSpec | None = None) -> dict:
        """Cores, lower bound, busiest core's work per step and the latency it implies."""
        work = self.core_work
        busiest = int(np.argmax(work)) if work else 0
        out = {"objective": self.objective, "cores": self.n_cores, "chips": self.chips,
               "lower_bound_cores": int(self.lower_bound["cores"]),
               "cores_over_lower_bound": round(self.n_cores / max(self.lower_bound["cores"],
                                                                   1), 4),
               "busiest_core": busiest,
               "busiest_core_synops_per_step": float(work[busiest]) if work else 0.0,
               "work_cap_synops_per_step": self.work_cap}
        e = spec.energy if spec is not None else None
        if e is not None and self.cores:
            neurons = [sum(self.blocks[b].n_neurons for b in c.blocks) for c in self.cores]
            core_s = [w * e.synop_s + n * e.neuron_update_inactive_s
                      for w, n in zip(work, neurons)]
            barrier = e.barrier_max_s if self.chips > 1 else e.barrier_s(self.tiles_used)
            out["busiest_core_s"] = float(max(core_s))
            out["latency_per_step_s"] = float(max(core_s) + barrier
                                              + float(self.max_route.get("seconds", 0.0)))
        return out

    @property
    def n_cores(self) -> int:
        return len(self.cores)

    def to_json(self) -> dict:
        """A JSON-safe summary (every number a Python int / float)."""
        util = {r: [c.utilisation[r] for c in self.cores] for r in RESOURCES}
        return {
            "target": self.target,
            "cores": self.n_cores,
            "chips": self.chips,
            "tiles": self.tiles_used,
            "lower_bound_cores": int(self.lower_bound["cores"]),
            "lower_bound": _plain(self.lower_bound),
            "packing_efficiency": round(self.lower_bound["cores"] / max(self.n_cores, 1), 4),
            "limits": dict(self.limits),
            "mean_utilisation": {r: round(float(np.mean(v)) if v else 0.0, 4)
                                 for r, v in util.items()},
            "placement_cost": {k: float(v) for k, v in self.placement_cost.items()},
            "rates": {k: float(v) for k, v in self.rates.items()},
            "max_route": _plain(self.max_route),
            "objective": self.objective,
            "work_cap": self.work_cap,
            "core_work": [round(w, 6) for w in self.core_work],
            "objectives": _plain(self.objectives),
            "coproc_io": _plain(self.coproc_io),
            "layers": _plain(self.layers),
            "layer_traffic": _plain(self.layer_traffic),
            "core_list": [c.to_json() for c in self.cores],
            "blocks": [b.to_json() for b in self.blocks],
        }

    @classmethod
    def from_json(cls, doc: dict, where: str = "mapping.json") -> "Mapping":
        """The mapping a build wrote (`to_json`), for pricing the build's own placement."""
        try:
            blocks = []
            for j in doc["blocks"]:
                rng = j.get("range", [0, 0])
                blocks.append(Block(int(j["index"]), str(j["layer"]), j["synapse"],
                                    int(j["neurons"]), int(j["synapses"]),
                                    {r: int(j["usage"][r]) for r in RESOURCES},
                                    start=int(rng[0]), stop=int(rng[1]),
                                    tile=tuple(j["tile"]) if "tile" in j else None,
                                    work=float(j.get("work", 0.0))))
            cores = [Core(int(c["index"]), [int(b) for b in c["blocks"]], int(c["chip"]),
                          (int(c["tile"][0]), int(c["tile"][1])), int(c["slot"]),
                          {r: int(c["usage"][r]) for r in RESOURCES},
                          {r: float(c["utilisation"][r]) for r in RESOURCES})
                     for c in doc["core_list"]]
            core_of_block = [0] * len(blocks)
            for c in cores:
                for b in c.blocks:
                    if not 0 <= b < len(blocks) or blocks[b].index != b:
                        raise ValueError(f"core {c.index} holds block {b}, which is not "
                                         f"one of the {len(blocks)} blocks")
                    core_of_block[b] = c.index
            if [c.index for c in cores] != list(range(len(cores))):
                raise ValueError("core indices are not 0, 1, 2, ...")
            return cls(target=str(doc["target"]), blocks=blocks, cores=cores,
                       chips=int(doc["chips"]), limits=dict(doc["limits"]),
                       lower_bound=dict(doc["lower_bound"]), layers=dict(doc["layers"]),
                       layer_traffic=dict(doc["layer_traffic"]), core_of_block=core_of_block,
                       tiles_used=int(doc["tiles"]),
                       placement_cost=dict(doc.get("placement_cost", {})),
                       rates=dict(doc.get("rates", {})),
                       max_route=dict(doc.get("max_route", {})),
                       objective=str(doc.get("objective", "cores")),
                       work_cap=doc.get("work_cap"),
                       objectives=dict(doc.get("objectives", {})),
                       coproc_io=dict(doc.get("coproc_io", {})))
        except (KeyError, TypeError, ValueError, IndexError, AttributeError) as exc:
            raise InputFileError(f"{where}: not a mapping written by snncompile compile "
                                 f"({type(exc).__name__}: {exc}); recompile") from None

    def table(self) -> str:
        """Readable summary: per layer, then per-resource utilisation and the lower bound."""
        from snncompile.report.compile import SYNAPSE_COUNTS, plural
        lb = self.lower_bound["cores"]
        lines = [f"target {self.target}: {plural(self.n_cores, 'core')} on "
                 f"{plural(self.chips, 'chip')}, {plural(self.tiles_used, 'tile')}; lower "
                 f"bound {plural(lb, 'core')} (cores used / lower bound = "
                 f"{self.n_cores / max(lb, 1):.2f})"]
        work = self.core_work or [0.0]
        lines[0] += (f"; objective {self.objective}; busiest core {int(np.argmax(work))}: "
                     f"{max(work):,.0f} synaptic ops per step")
        for name, f in self.objectives.items():
            lat = f.get("latency_per_step_s")
            lines.append(f"  objective {name:<8} {plural(f['cores'], 'core'):>11} "
                         f"(cores / lower bound = {f['cores_over_lower_bound']:.2f}), busiest "
                         f"core {f['busiest_core_synops_per_step']:,.0f} synops/step"
                         + (f", latency {lat * 1e6:.3g} us/step (estimate)" if lat else ""))
        lines.append(f"{'layer':<16}{'neurons':>10}{'mapped synapses':>17}{'blocks':>8}"
                     f"{'msgs/spike':>12}{'hops/msg':>10}")
        for name, info in self.layers.items():
            tr = self.layer_traffic.get(name, {})
            msgs = tr.get("messages", 0)
            hops = (tr.get("hops_ew", 0) + tr.get("hops_ns", 0)) / msgs if msgs else 0.0
            per = msgs / info["neurons"] if info["neurons"] else 0.0
            lines.append(f"{name:<16}{info['neurons']:>10,}{info['synapses']:>17,}"
                         f"{info['blocks']:>8}{per:>12.2f}{hops:>10.2f}")
        io = self.coproc_io
        if io:
            lines.append(f"attention: {io['relay_messages_per_step']:,} relay neurons "
                         f"({', '.join(io['relay_layers'])}) send the gated currents as "
                         f"{io['relay_bits']}-bit graded spikes to the co-processor and "
                         f"{io['gain_messages_per_step']:,} {io['gain_bits']}-bit gain "
                         f"messages come back per step ({io['bytes_per_step']:,} bytes); "
                         "relays and gain axons are charged neurons, axons, synapse memory "
                         "and cores above")
        lines.append(f"  mapped synapses: {SYNAPSE_COUNTS['mapped']}")
        lines.append("  msgs/spike: messages one spike of a neuron sends (one per destination "
                     "core); hops/msg: mesh hops per message")
        lines.append(f"{'resource':<16}{'limit/core':>12}{'mean use':>10}{'max use':>9}"
                     f"{'cores needed':>14}")
        for r in RESOURCES:
            u = [c.utilisation[r] for c in self.cores] or [0.0]
            lines.append(f"{r:<16}{self.limits[r]:>12,}{np.mean(u):>10.0%}{max(u):>9.0%}"
                         f"{self.lower_bound['cores_by_resource'][r]:>14}")
        lines.append("  use: fraction of a core's limit used (mean and max over cores); cores "
                     "needed: the lower bound from that resource alone")
        return "\n".join(lines)


def _plain(x):
    if isinstance(x, dict):
        return {str(k): _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    if isinstance(x, np.generic):
        return x.item()
    return x


# ------------------------------------------------------------------ geometry
class _Grid:
    """Slots (chip, tile x, tile y, core) in serpentine order and the hop cost between tiles."""

    def __init__(self, spec: TargetSpec, chips: int):
        ch = spec.chip
        self.cpt = ch.cores_per_tile
        slots = []
        for k in range(chips):
            kx, ky = k % ch.chip_grid_x, k // ch.chip_grid_x
            for ty in range(ch.mesh_y):
                xs = range(ch.mesh_x) if ty % 2 == 0 else range(ch.mesh_x - 1, -1, -1)
                for tx in xs:
                    for c in range(ch.cores_per_tile):
                        slots.append((k, tx, ty, c, kx * ch.mesh_x + tx, ky * ch.mesh_y + ty,
                                      kx, ky))
        self.slots = np.array(slots, np.int64).reshape(-1, 8)
        self.gx, self.gy = self.slots[:, 4], self.slots[:, 5]
        self.kx, self.ky = self.slots[:, 6], self.slots[:, 7]
        e = spec.energy
        self.w_ew, self.w_ns, self.w_chip = ((e.hop_ew_j, e.hop_ns_j, e.chip_hop_j) if e
                                             else (1.0, 1.0, 1.0))
        self.by_tile: dict[tuple[int, int], list[int]] = {}
        for s, (gx, gy) in enumerate(zip(self.gx.tolist(), self.gy.tolist())):
            self.by_tile.setdefault((gx, gy), []).append(s)
        self._prepare()

    def hops(self, a, b):
        """(east-west, north-south, chip) hops between slots a and b (vectorised); b = -1
        stands for the input port at tile (0, 0) of chip 0."""
        a, b = np.asarray(a), np.asarray(b)
        ax, ay = np.where(a < 0, 0, self.gx[a]), np.where(a < 0, 0, self.gy[a])
        bx, by = np.where(b < 0, 0, self.gx[b]), np.where(b < 0, 0, self.gy[b])
        akx, aky = np.where(a < 0, 0, self.kx[a]), np.where(a < 0, 0, self.ky[a])
        bkx, bky = np.where(b < 0, 0, self.kx[b]), np.where(b < 0, 0, self.ky[b])
        return np.abs(ax - bx), np.abs(ay - by), np.abs(akx - bkx) + np.abs(aky - bky)

    def _prepare(self):
        # weighted coordinates: the L1 distance between rows is the hop energy
        self.wpos = np.stack([self.gx * self.w_ew, self.gy * self.w_ns, self.kx * self.w_chip,
                              self.ky * self.w_chip], axis=1).astype(float)
        port = np.zeros(4)  # input port: tile (0, 0) of chip 0
        self.port_cost = np.abs(self.wpos - port).sum(1).tolist()

    def cost(self, a: int, b: np.ndarray) -> np.ndarray:
        """Hop energy from slot `a` to slots `b` (array)."""
        return np.abs(self.wpos[b] - self.wpos[a]).sum(1)

    def cost1(self, a: int, b: int) -> float:
        """Hop energy between two slots; -1 is the input port."""
        if a < 0 or b < 0:
            return self.port_cost[max(a, b)] if max(a, b) >= 0 else 0.0
        return float(np.abs(self.wpos[a] - self.wpos[b]).sum())


# ------------------------------------------------------------------ placement
def place(split: Split, spec: TargetSpec, chips: int | None = None,
          rates: dict[str, float] | None = None, passes: int = 4) -> Mapping:
    """Place the cores of `split` on `chips` chips (default: as few as hold them)."""
    chips = _chips(split.n_cores, spec, chips)
    rates = dict(rates or {})
    for name in rates:
        if name not in split.layers:
            raise UnsupportedError(f"rates: '{name}' is not a layer; layers are "
                                   f"{', '.join(split.layers)}")
    grid = _Grid(spec, chips)
    traffic = _CoreTraffic(split, rates)
    slot_of = np.arange(split.n_cores)  # greedy: network order along the serpentine
    initial = traffic.total(grid, slot_of)
    _improve(traffic, grid, slot_of, passes)
    final = traffic.total(grid, slot_of)
    layer_traffic, max_route = _layer_traffic(split, spec, grid, traffic, slot_of)
    return Mapping(
        target=split.target, blocks=split.blocks, cores=_cores(split, grid, slot_of),
        chips=chips, limits=split.limits, lower_bound=split.lower_bound,
        layers=_layer_summary(split, traffic.core_of_block), layer_traffic=layer_traffic,
        core_of_block=traffic.core_of_block.tolist(),
        tiles_used=len({(int(grid.gx[s]), int(grid.gy[s])) for s in slot_of.tolist()}),
        placement_cost={"initial_j_per_step": initial, "final_j_per_step": final},
        max_route=max_route, coproc_io=dict(split.coproc_io),
        rates={name: rates.get(name, 1.0) for name in split.layers})


def _chips(n: int, spec: TargetSpec, chips: int | None) -> int:
    """The chips `n` cores are placed on: `chips`, checked, or as few as hold them."""
    if spec.chip is None:
        raise UnsupportedError(f"target '{spec.name}' has no [chip] section; placement needs "
                               "the mesh size and cores per chip")
    ch = spec.chip
    need = max(1, math.ceil(n / ch.cores_per_chip))
    if chips is None:
        if need > ch.max_chips:
            raise ResourceLimitError(
                f"network: cores ({n:,}) exceeds what {ch.max_chips} chips hold "
                f"({ch.max_chips * ch.cores_per_chip:,}); the largest {spec.name} system has "
                f"{ch.max_chips} chips")
        return need
    if chips < 1:
        raise ResourceLimitError(f"chips={chips}: need at least one chip")
    if n > chips * ch.cores_per_chip:
        raise ResourceLimitError(
            f"network: cores ({n:,}) exceeds what {chips} chip(s) hold "
            f"({chips * ch.cores_per_chip:,}, {ch.cores_per_chip} cores each); "
            f"use chips={need} or more")
    return chips


class _CoreTraffic:
    """Messages per step between cores at the given rates (the placement objective's
    weights): per traffic edge of the split its source layer, rate and source / destination
    cores (-1: the input port); per core its neighbours' traffic (`nbr_i`, `nbr_w`) and its
    traffic with the input port (`fixed`)."""

    def __init__(self, split: Split, rates: dict[str, float]):
        n = split.n_cores
        layer_of_block = {b.index: b.layer for b in split.blocks}
        self.core_of_block = np.zeros(len(split.blocks), np.int64)
        for c, blocks in enumerate(split.cores):
            self.core_of_block[blocks] = c
        edges = split.edges
        self.src_b, self.dst_b, self.cnt = (edges.T if len(edges)
                                            else (np.zeros(0, np.int64),) * 3)
        self.src_layer = [split.input_name if s < 0 else layer_of_block[s]
                          for s in self.src_b.tolist()]
        rate = np.array([rates.get(l, 1.0) for l in self.src_layer], float)
        self.src_c = np.where(self.src_b < 0, -1,
                              self.core_of_block[np.maximum(self.src_b, 0)])
        self.dst_c = (self.core_of_block[self.dst_b] if len(self.dst_b)
                      else np.zeros(0, np.int64))
        nbr: list[dict[int, float]] = [dict() for _ in range(n)]
        self.fixed: list[float] = [0.0] * n  # traffic with the input port
        for s, d, x in zip(self.src_c.tolist(), self.dst_c.tolist(),
                           (self.cnt * rate).tolist()):
            if s == d:
                continue
            if s < 0:
                self.fixed[d] += x
                continue
            nbr[s][d] = nbr[s].get(d, 0.0) + x
            nbr[d][s] = nbr[d].get(s, 0.0) + x
        self.nbr = nbr
        self.nbr_i = [np.fromiter(d.keys(), np.int64, len(d)) for d in nbr]
        self.nbr_w = [np.fromiter(d.values(), float, len(d)) for d in nbr]

    def core_cost(self, grid: "_Grid", slot_of: np.ndarray, c: int, slot: int) -> float:
        """Hop energy per step of core `c`'s traffic were it at `slot`."""
        cost = self.fixed[c] * grid.cost1(-1, slot) if self.fixed[c] else 0.0
        if len(self.nbr_i[c]):
            cost += float(self.nbr_w[c] @ grid.cost(slot, slot_of[self.nbr_i[c]]))
        return cost

    def total(self, grid: "_Grid", slot_of: np.ndarray) -> float:
        """Hop energy per step of all traffic with the cores at `slot_of`."""
        n = len(self.fixed)
        t = sum(self.fixed[c] * grid.cost1(-1, int(slot_of[c])) for c in range(n)
                if self.fixed[c])
        for c in range(n):
            if len(self.nbr_i[c]):
                t += 0.5 * float(self.nbr_w[c] @ grid.cost(slot_of[c],
                                                           slot_of[self.nbr_i[c]]))
        return t


def _improve(traffic: _CoreTraffic, grid: "_Grid", slot_of: np.ndarray, passes: int) -> None:
    """Local improvement, in place: swap each core with the cores or free slots of the
    tiles one hop away while that lowers the hop energy; at most `passes` sweeps."""
    n = len(slot_of)
    occupant = np.full(len(grid.slots), -1)
    occupant[:n] = np.arange(n)
    for _ in range(passes):
        changed = False
        for c in range(n):
            if not traffic.nbr[c] and not traffic.fixed[c]:
                continue
            changed |= _improve_core(traffic, grid, slot_of, occupant, c)
        if not changed:
            break


def _improve_core(traffic: _CoreTraffic, grid: "_Grid", slot_of: np.ndarray,
                  occupant: np.ndarray, c: int) -> bool:
    """Try core `c` in every slot of the four neighbouring tiles (swapping with their
    occupant); keep each swap that lowers the two cores' cost. True when one was kept."""
    cost = traffic.core_cost
    here = int(slot_of[c])
    gx, gy = int(grid.gx[here]), int(grid.gy[here])
    c_here = cost(grid, slot_of, c, here)
    changed = False
    for dx, dy in ((1, 0), (-1, 0), (0, 1), (0, -1)):
        for s in grid.by_tile.get((gx + dx, gy + dy), ()):
            o = int(occupant[s])
            if o == c:
                continue
            before = c_here + (cost(grid, slot_of, o, s) if o >= 0 else 0.0)
            # both moved; the c-o edge is counted twice before and after alike
            slot_of[c] = s
            if o >= 0:
                slot_of[o] = here
            after = cost(grid, slot_of, c, s) + (cost(grid, slot_of, o, here) if o >= 0
                                                 else 0.0)
            slot_of[c] = here
            if o >= 0:
                slot_of[o] = s
            if after < before * (1 - 1e-12):
                occupant[s], occupant[here] = c, o
                slot_of[c] = s
                if o >= 0:
                    slot_of[o] = here
                here = s
                c_here = cost(grid, slot_of, c, here)
                changed = True
    return changed


def _cores(split: Split, grid: "_Grid", slot_of: np.ndarray) -> list[Core]:
    """Every core with its blocks, position and usage."""
    cores = []
    lims = split.limits
    for c, blocks in enumerate(split.cores):
        k, tx, ty, sl = (int(v) for v in grid.slots[slot_of[c], :4])
        usage = {r: int(split.core_usage[c, i]) for i, r in enumerate(RESOURCES)}
        cores.append(Core(c, list(blocks), k, (tx, ty), sl, usage,
                          {r: usage[r] / lims[r] for r in RESOURCES}))
    return cores


def _layer_traffic(split: Split, spec: TargetSpec, grid: "_Grid", traffic: _CoreTraffic,
                   slot_of: np.ndarray) -> tuple[dict, dict]:
    """Per layer: message and hop totals for one spike of every neuron; and the longest
    used route (hops and seconds)."""
    out: dict[str, dict] = {}
    max_route = {"hops_ew": 0, "hops_ns": 0, "chip_hops": 0, "seconds": 0.0}
    if not len(traffic.src_b):
        return out, max_route
    src_c, cnt = traffic.src_c, traffic.cnt
    s_slot = np.where(src_c < 0, -1, slot_of[np.maximum(src_c, 0)])
    ew, ns, chp = grid.hops(s_slot, slot_of[traffic.dst_c])
    if spec.energy is not None:
        e = spec.energy
        route = ew * e.hop_ew_s + ns * e.hop_ns_s + chp * e.chip_hop_s
        worst = int(np.argmax(route))
        max_route = {"hops_ew": int(ew[worst]), "hops_ns": int(ns[worst]),
                     "chip_hops": int(chp[worst]), "seconds": float(route[worst])}
    for name in split.layers:
        m = np.array([l == name for l in traffic.src_layer])
        if m.any():
            out[name] = {"messages": int(cnt[m].sum()),
                         "hops_ew": int((cnt[m] * ew[m]).sum()),
                         "hops_ns": int((cnt[m] * ns[m]).sum()),
                         "chip_hops": int((cnt[m] * chp[m]).sum())}
    return out, max_route


def _layer_summary(split: Split, core_of_block: np.ndarray) -> dict[str, dict]:
    """Per layer: neurons, synapse node (the first; `synapse_nodes`: all of them when there
    are several), synapses (of all), blocks and the cores holding them."""
    layers = {}
    for name, lb in split.layers.items():
        layers[name] = {"neurons": lb.neurons, "synapse": lb.synapse, "synapses": lb.synapses,
                        "blocks": 0 if lb.blocks == [-1] else len(lb.blocks),
                        "cores": sorted({int(core_of_block[b]) for b in lb.blocks if b >= 0})}
        if len(lb.synapse_nodes) > 1:   # a residual block's body and shortcut, ...
            layers[name]["synapse_nodes"] = list(lb.synapse_nodes)
        if lb.relay_of:
            layers[name]["relay_of"] = lb.relay_of
    return layers


OBJECTIVES = ("cores", "latency")


def map_graph(graph: Graph, spec: TargetSpec, chips: int | None = None,
              rates: dict[str, float] | None = None, objective: str = "cores",
              max_cores: int | None = None, compare: bool = False) -> Mapping:
    """Split a fixed-stage graph into core-sized blocks and place them on `chips` chips.

    rates: spikes per neuron per step of each layer (and of the input), to weight traffic
    and to count each core's work (synaptic ops per step); default 1 for all.

    objective "cores": the fewest cores (see split._pack). Objective "latency": the slowest
    core's work per step as small as a core budget allows: `max_cores` (default: every
    core of the chips the cores objective needs, or of `chips`); the work cap per block and
    per core is found by bisection, each step re-splitting the network (every per-core
    limit still holds). `compare` maps with both objectives and records both in
    `mapping.objectives`.

        >>> m = map_graph(graph, load_target("loihi1"))        # doctest: +SKIP
        >>> m.n_cores, m.chips, m.lower_bound["cores"]          # doctest: +SKIP
    """
    if objective not in OBJECTIVES:
        raise UnsupportedError(f"objective '{objective}': choose one of "
                               f"{', '.join(OBJECTIVES)}")
    if max_cores is not None and max_cores < 1:
        raise ResourceLimitError(f"max_cores={max_cores}: need at least one core")
    packed = split_graph(graph, spec, rates=rates)
    results = {}
    if objective == "cores" or compare:
        results["cores"] = place(packed, spec, chips=chips, rates=rates)
    if objective == "latency" or compare:
        split = _latency_split(graph, spec, packed, rates, chips, max_cores)
        m = place(split, spec, chips=chips, rates=rates)
        m.objective, m.work_cap = "latency", split.work_cap
        results["latency"] = m
    chosen = results[objective]
    if compare:
        chosen.objectives = {k: v.figures(spec) for k, v in results.items()}
    return chosen


def _latency_split(graph, spec, packed: Split, rates, chips, max_cores) -> Split:
    """The split with the smallest work cap (bisection) whose cores fit the budget."""
    ch = spec.chip
    if max_cores is None:
        n_chips = chips or max(1, math.ceil(packed.n_cores / ch.cores_per_chip))
        max_cores = n_chips * ch.cores_per_chip
    elif chips is not None:
        max_cores = min(max_cores, chips * ch.cores_per_chip)
    if packed.n_cores > max_cores:
        raise ResourceLimitError(
            f"max_cores={max_cores}: below the {packed.n_cores} cores the network needs at "
            "the fewest (objective cores); raise --max-cores")
    work = [sum(packed.blocks[b].work for b in c) for c in packed.cores]
    hi = max(work) if work else 0.0
    best = packed
    best.work_cap = None
    if hi <= 0:
        return best
    # below total / max_cores no split fits (every core's work <= cap): start there
    lo = sum(work) / max_cores
    for _ in range(12):
        cap = (lo + hi) / 2
        split = split_graph(graph, spec, rates=rates, work_cap=cap)
        if split.n_cores <= max_cores:
            best, hi = split, cap
            best.work_cap = cap
        else:
            lo = cap
        if hi - lo <= 0.01 * hi:
            break
    return best
