"""Target descriptions: data files under `targets/` loaded into one frozen spec.

Every stage reads limits and bit widths from a `TargetSpec`; no stage repeats a limit as a
literal. A user may pass the path of their own TOML file instead of a built-in name.

    >>> spec = load_target("loihi2")
    >>> spec.numerics.vth_max
    131071
    >>> spec.limits.neurons, spec.chip.cores_per_chip
    (8192, 128)

A target file may name a `base` target and override whole keys of it (`loihi1-sanafe.toml`
replaces only `[energy]`), and `load_target(name, energy=...)` swaps in another energy table
(any TOML file with an `[energy]` section). Sections `[limits]`, `[chip]` and `[energy]` are
optional for stages that do not need them; a parallel table such as `[energy.estimate]`
flags numbers that are estimates rather than published figures.
"""
from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from typing import Any

from .errors import InputFileError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

TARGETS_DIR = Path(__file__).resolve().parent.parent / "targets"


@dataclasses.dataclass(frozen=True)
class Numerics:
    """Fixed-point widths of a Loihi-style neurocore (see targets/*.toml for sources)."""

    weight_bits: int
    weight_exp_min: int
    weight_exp_max: int
    decay_bits: int
    state_bits: int
    act_shift: int
    vth_shift: int
    vth_mant_bits: int
    bias_mant_bits: int
    bias_exp_max: int
    graded_bits: int
    #: neurons whose update is microcode (Loihi 2): reset by subtraction and spiking at
    #: v >= vth are possible, and du, dv, vth per neuron; Loihi 1's fixed CUBA
    #: compartment has only v > vth, v = 0, and shares du, dv, vth through profiles
    programmable_neurons: bool = True

    @property
    def decay_unity(self) -> int:
        return 1 << self.decay_bits

    @property
    def state_max(self) -> int:
        """2**(state_bits-1): u wraps above it, v clips one below it."""
        return 1 << (self.state_bits - 1)

    @property
    def vth_max(self) -> int:
        return (1 << self.vth_mant_bits) - 1

    @property
    def bias_mant_max(self) -> int:
        return (1 << (self.bias_mant_bits - 1)) - 1


@dataclasses.dataclass(frozen=True)
class Chip:
    """Chip organisation: cores on a 2-D mesh of tiles; several chips on a grid of chips."""

    cores_per_chip: int
    cores_per_tile: int
    mesh_x: int  # tiles east-west
    mesh_y: int  # tiles north-south
    x86_cores: int  # embedded management cores (not used for neurons)
    chip_grid_x: int  # chips per row when several chips are used
    max_chips: int
    estimates: frozenset = frozenset()  # keys flagged as estimates in the target file

    @property
    def tiles_per_chip(self) -> int:
        return self.mesh_x * self.mesh_y


@dataclasses.dataclass(frozen=True)
class Limits:
    """Per-core resource limits and the synapse memory encoding."""

    neurons: int  # compartments per core
    input_axons: int  # distinct presynaptic sources reaching one core
    output_axons: int  # (neuron, destination core) pairs leaving one core
    synapse_bits: int  # synapse memory per core
    synapse_group_size: int  # synapses per group of one input axon
    synapse_group_header_bits: int  # header bits per group
    synapse_word_bits: int  # a group is rounded up to whole words
    synapse_index_bits_sparse: int  # extra bits per synapse in the sparse format
    neuron_state_bits: int  # per neuron, charged to synapse memory where memory is shared
    conv_weight_sharing: bool  # a conv block stores its kernel once
    estimates: frozenset = frozenset()

    #: Resources checked per core, in report order.
    RESOURCES = ("neurons", "input_axons", "output_axons", "synapse_bits")

    def limit(self, resource: str) -> int:
        return int(getattr(self, resource))


@dataclasses.dataclass(frozen=True)
class Energy:
    """Energy (J) and time (s) per event, static power (W). See targets/*.toml for sources."""

    synop_j: float
    synop_conv_j: float
    synop_s: float
    neuron_update_active_j: float
    neuron_update_inactive_j: float
    neuron_update_active_s: float
    neuron_update_inactive_s: float
    spike_out_j: float
    spike_out_s: float
    message_j: float
    message_s: float
    hop_ew_j: float
    hop_ns_j: float
    hop_ew_s: float
    hop_ns_s: float
    chip_hop_j: float
    chip_hop_s: float
    barrier_min_s: float
    barrier_max_s: float
    barrier_max_tiles: int
    static_power_w: float
    synop_sparse_j: float | None = None  # None: same as synop_j
    # per-step system cost outside the neurocores (host / embedded-x86 I/O, management),
    # charged once per time step; 0 when the table has none
    system_step_j: float = 0.0
    system_step_s: float = 0.0
    # graded spikes: extra cost per payload bit of each message (Loihi 2); 0 when unknown
    message_payload_bit_j: float = 0.0
    message_payload_bit_s: float = 0.0
    estimates: frozenset = frozenset()
    source: str = ""  # file the table was read from

    def barrier_s(self, tiles: int) -> float:
        """Barrier sync time, linear in the number of tiles in use (Davies 2018 gives the
        1-tile and 32-tile ends); beyond `barrier_max_tiles` it stays at the maximum."""
        if self.barrier_max_tiles <= 1:
            return self.barrier_max_s
        frac = min(max(tiles - 1, 0) / (self.barrier_max_tiles - 1), 1.0)
        return self.barrier_min_s + frac * (self.barrier_max_s - self.barrier_min_s)


@dataclasses.dataclass(frozen=True)
class TargetSpec:
    name: str
    description: str
    numerics: Numerics
    raw: dict = dataclasses.field(default_factory=dict, compare=False, repr=False)
    path: str = ""
    chip: Chip | None = None
    limits: Limits | None = None
    energy: Energy | None = None


#: Allowed ranges of every number a target file sets: [low, high] inclusive. Integers keep
#: the fixed-point arithmetic inside int64 and the chip geometry allocatable; energies and
#: times are finite and non-negative. Loading refuses anything outside, once, so that no
#: stage (quantize, place, split, partition, energy) ever sees a bad value.
_BIG = 1 << 30
RANGES: dict[str, dict[str, tuple]] = {
    "numerics": {
        "weight_bits": (2, 16), "weight_exp_min": (-16, 0), "weight_exp_max": (0, 16),
        "decay_bits": (1, 16), "state_bits": (8, 32), "act_shift": (0, 16),
        "vth_shift": (0, 16), "vth_mant_bits": (1, 24), "bias_mant_bits": (2, 24),
        "bias_exp_max": (0, 16), "graded_bits": (0, 32)},
    "chip": {
        "cores_per_chip": (1, 1 << 12), "cores_per_tile": (1, 1 << 12), "mesh_x": (1, 256),
        "mesh_y": (1, 256), "x86_cores": (0, 1 << 10), "chip_grid_x": (1, 1 << 12),
        "max_chips": (1, 1 << 14)},
    "limits": {
        "neurons": (1, 1 << 24), "input_axons": (1, 1 << 24), "output_axons": (1, 1 << 24),
        "synapse_bits": (1, 1 << 40), "synapse_group_size": (1, 1 << 16),
        "synapse_group_header_bits": (0, 1 << 16), "synapse_word_bits": (1, 1 << 16),
        "synapse_index_bits_sparse": (0, 64), "neuron_state_bits": (0, 1 << 16)},
    "energy": {"barrier_max_tiles": (1, _BIG), "*": (0.0, 1e3)},   # J, s, W per event
    "coproc": {"clock_hz": (1.0, 1e12), "bytes_per_s": (1.0, 1e15),
               "cycles_per_mac": (0.0, 1e6), "cycles_per_op": (0.0, 1e6),
               "message_latency_s": (0.0, 1e3), "energy_per_op_j": (0.0, 1e3),
               "energy_per_byte_j": (0.0, 1e3)},
}
#: (section, smaller key, larger key): pairs that must be ordered
_ORDERED = (("numerics", "weight_exp_min", "weight_exp_max"),
            ("energy", "barrier_min_s", "barrier_max_s"))
MAX_TARGET_BYTES = 1 << 20   # a target file is a page of numbers


def available_targets() -> list[str]:
    return sorted(p.stem for p in TARGETS_DIR.glob("*.toml"))


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        if not path.is_file():
            raise InputFileError(f"{path}: target file not found (or not a regular file)")
        with open(path, "rb") as fh:
            data = fh.read(MAX_TARGET_BYTES + 1)
        if len(data) > MAX_TARGET_BYTES:
            raise InputFileError(f"{path}: target file is larger than {MAX_TARGET_BYTES} "
                                 "bytes")
        return tomllib.loads(data.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise InputFileError(f"{path}: not a valid TOML target file ({exc})") from None
    except RecursionError:
        raise InputFileError(f"{path}: not a valid TOML target file (nested too deeply)") \
            from None
    except OSError as exc:
        raise InputFileError(f"{path}: cannot read target file ({exc.strerror or exc})") \
            from None


def _resolve(name_or_path: str | Path) -> Path:
    text = str(name_or_path)
    path = Path(text)
    if not (text.endswith(".toml") or path.exists()):
        path = TARGETS_DIR / f"{text}.toml"
        if not path.exists():
            raise InputFileError(
                f"unknown target '{text[:80]}'; built-in targets: "
                f"{', '.join(available_targets())} (or pass the path of a .toml target file)"
            )
    return path


def _merged(path: Path, seen: tuple = ()) -> dict[str, Any]:
    """The file's table, on top of its `base` target's (keys of a section override)."""
    raw = _read_toml(path)
    base = raw.get("base")
    if base is None:
        return raw
    if not isinstance(base, str) or len(seen) > 8:
        raise InputFileError(f"{path}: base = {_show(base)} must name a target (a string; "
                             "at most 8 levels of base targets)")
    if base in available_targets():
        base_path = TARGETS_DIR / f"{base}.toml"
    elif base.endswith(".toml") and Path(base).name == base and not base.startswith("."):
        base_path = path.parent / base    # a sibling file, never a path elsewhere
    else:
        raise InputFileError(f"{path}: base = {_show(base)} must be a built-in target "
                             f"({', '.join(available_targets())}) or a .toml file in the "
                             "same folder")
    if base_path.resolve() in seen or base_path.resolve() == path.resolve():
        raise InputFileError(f"{path}: base target '{base}' refers back to itself")
    merged = _merged(base_path, seen + (path.resolve(),))
    for key, value in raw.items():
        if key == "base":
            continue
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            section = dict(merged[key])
            # an overriding section replaces its estimate flags wholesale
            section.pop("estimate", None)
            section.update(value)
            merged[key] = section
        else:
            merged[key] = value
    return merged


def _show(value) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _number(path, name: str, key: str, value, want: str):
    """`value` checked against its type (`want`: bool, int or float) and RANGES."""
    if want == "bool":
        if not isinstance(value, bool):
            raise InputFileError(f"{path}: [{name}] {key} = {_show(value)} must be true or "
                                 "false")
        return value
    ranges = RANGES.get(name, {})
    lo, hi = ranges.get(key, ranges.get("*", (0, _BIG)))
    is_int = isinstance(value, int) and not isinstance(value, bool)
    ok = is_int if want == "int" else (is_int or isinstance(value, float))
    if ok and not (lo <= value <= hi):    # NaN fails this comparison too
        ok = False
    if not ok:
        kind = "an integer" if want == "int" else "a finite number"
        raise InputFileError(f"{path}: [{name}] {key} = {_show(value)} must be {kind} in "
                             f"[{lo:g}, {hi:g}]")
    return value


def _section(path, raw: dict, name: str, cls, optional=()):
    """Build dataclass `cls` from table `[name]`; numbers type- and range-checked against
    RANGES, estimates collected."""
    table = raw.get(name)
    if table is None:
        return None
    if not isinstance(table, dict):
        raise InputFileError(f"{path}: [{name}] must be a table, got {_show(table)}")
    skip = {"estimates", "source"}
    fields = {f.name: f for f in dataclasses.fields(cls) if f.name not in skip}
    missing = sorted(k for k in fields if k not in table and k not in optional)
    if missing:
        raise InputFileError(f"{path}: [{name}] lacks {', '.join(missing)}")
    values = {}
    for key, f in fields.items():
        if key in table:
            want = ("bool" if f.type in ("bool", bool) else
                    "int" if f.type in ("int", int) else "float")
            values[key] = _number(path, name, key, table[key], want)
    for sec, small, large in _ORDERED:
        if sec == name and small in values and large in values \
                and values[small] > values[large]:
            raise InputFileError(f"{path}: [{name}] {small} = {values[small]} must not "
                                 f"exceed {large} = {values[large]}")
    if "estimates" in {f.name for f in dataclasses.fields(cls)}:
        values["estimates"] = _estimates(path, table, name, fields)
    return cls(**values)


def _estimates(path, table: dict, name: str, fields) -> frozenset:
    est = table.get("estimate", {})
    if not isinstance(est, dict):
        raise InputFileError(f"{path}: [{name}.estimate] must be a table of key = true")
    unknown = sorted(set(est) - set(fields))
    if unknown:
        raise InputFileError(f"{path}: [{name}.estimate] names unknown keys "
                             f"{', '.join(unknown)[:120]}")
    return frozenset(k for k, v in est.items() if v)


def _check_chip(path, chip: "Chip | None") -> None:
    if chip is not None and chip.mesh_x * chip.mesh_y * chip.cores_per_tile \
            < chip.cores_per_chip:
        raise InputFileError(f"{path}: [chip] mesh_x * mesh_y * cores_per_tile = "
                             f"{chip.mesh_x * chip.mesh_y * chip.cores_per_tile} holds fewer "
                             f"than cores_per_chip = {chip.cores_per_chip} cores")


def _check_coproc(path, raw: dict) -> None:
    """[coproc] (read by the partition report and the energy model) checked like the
    dataclass sections: known keys, finite numbers in range."""
    table = raw.get("coproc")
    if table is None:
        return
    if not isinstance(table, dict):
        raise InputFileError(f"{path}: [coproc] must be a table, got {_show(table)}")
    keys = RANGES["coproc"]
    for key, value in table.items():
        if key == "estimate":
            continue
        if key not in keys:
            raise InputFileError(f"{path}: [coproc] has unknown key {_show(key)}; known: "
                                 f"{', '.join(keys)}")
        _number(path, "coproc", key, value, "float")
    _estimates(path, table, "coproc", keys)


def load_target(name_or_path: str | Path, energy: str | Path | None = None) -> TargetSpec:
    """Load a built-in target by name (`loihi1`, `loihi2`) or a TOML file by path.

    `energy`: name or path of another file whose `[energy]` table replaces the target's,
    e.g. `load_target("loihi1", energy="loihi1-sanafe")`.
    """
    path = _resolve(name_or_path)
    raw = _merged(path)
    if "numerics" not in raw:
        raise InputFileError(f"{path}: has no [numerics] table")
    numerics = _section(path, raw, "numerics", Numerics, optional=("programmable_neurons",))
    _check_coproc(path, raw)
    energy_path = path
    if energy is not None:
        energy_path = _resolve(energy)
        raw = dict(raw, energy=_merged(energy_path).get("energy"))
        if raw["energy"] is None:
            raise InputFileError(f"{energy_path}: energy table file has no [energy] section")
    energy_spec = _section(energy_path, raw, "energy", Energy, optional=("synop_sparse_j", "system_step_j", "system_step_s",
                                   "message_payload_bit_j", "message_payload_bit_s"))
    if energy_spec is not None:
        energy_spec = dataclasses.replace(energy_spec, source=str(energy_path))
    chip = _section(path, raw, "chip", Chip)
    _check_chip(path, chip)
    return TargetSpec(
        name=str(raw.get("name", path.stem))[:80],
        description=str(raw.get("description", ""))[:400],
        numerics=numerics,
        raw=raw,
        path=str(path),
        chip=chip,
        limits=_section(path, raw, "limits", Limits),
        energy=energy_spec,
    )
