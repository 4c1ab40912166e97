"""Import a NIR graph (Neuromorphic Intermediate Representation, `nir` package) into a float
`Graph`.

NIR states continuous-time equations; every exporter simulates a discrete-time model and
writes it in NIR terms with its own time step and its own habits. Importing correctly needs
the step and the habits, so `import_nir` first decides which exporter's convention the
file follows (`CONVENTIONS`), from what that exporter writes, never from a tolerance on tau:

    snncompile    graph metadata {"exporter": "snncompile", "dt": ...} (our own export)
    rockpool      node names "<i>_LIFTorch", "<i>_LinearTorch" (rockpool's to_nir); dt solved
                  exactly from r = tau_mem / dt * exp(-dt / tau_mem), which it writes
    spikingjelly  node names "_0", "_1", ... (export_to_nir traces with torch.fx; nirtorch's
                  tracer names modules "0", "1"); dt = 1 / r of its IF nodes when it has any
    norse         CubaLIF with r = 1 and w_in = 1 (norse's LIFCell); IF nodes with r = 1
    snntorch      every LIF/CubaLIF has r = tau_mem / 1e-4 and w_in = tau_syn / 1e-4: the
                  dt snnTorch's export_to_nir hard-codes (dt = tau / r)
    sinabs        IF nodes whose r = 1 is written per neuron (sinabs' to_nir); LIF with r = 1
    nir           anything else: the NIR equations, forward Euler, dt from the metadata key
                  "dt", from the caller (`compile --dt`), or guessed (1e-3, said so)

`convention=` (`compile --nir-convention`) names one explicitly when the file cannot tell
(e.g. a net of LIF nodes with r = 1 only: norse writes tau * dt there, sinabs steps).

Discretisation. With step `dt` the continuous CubaLIF

    tau_syn dI/dt = -I + w_in x        tau_mem dv/dt = (v_leak - v) + r I

becomes, in Loihi's update order (current first, then voltage with the new current):

    I = (1 - du) I + du * w_in * x     du = dt / tau_syn
    v = (1 - dv) v + dv * v_leak + dv * r * I     dv = dt / tau_mem

Loihi's LIF adds u to v with gain 1, so we rescale the state: u = I / a, V = v / (a g) with
a = du * w_in (current gain) and g = dv * r (voltage gain). That is exact and gives

    LIF(du, dv, vth = v_threshold / (a g), bias = v_leak / (a r))

snnTorch writes r = tau_mem/dt and w_in = tau_syn/dt, for which a = g = 1. `LIF` is the
same with du = 1 (no current state), `IF` (dv/dt = r I) has du = 1, dv = 0, g = dt r,
`Threshold` is a memoryless LIF (du = dv = 1). Forward Euler is exact for the discrete
models snnTorch, spikingjelly and norse simulate; sinabs and rockpool decay by
exp(-dt/tau) per step, which their conventions reproduce exactly. Against the continuous
ODE forward Euler's decay per step (1 - dt/tau) differs from exp(-dt/tau):
`graph.meta["nir_approximation"]` gives that error per layer.

What the exporters do not write (reset mode, the compare, several spikes per step, sinabs'
norm_input) is assumed as the exporting library's own neuron does it where a LIF option
says it (sinabs and rockpool reset by subtraction and spike at v >= threshold,
spikingjelly resets to v_reset and spikes at v >= threshold: `_SPIKING`), else as Loihi
(reset to 0, v > threshold), always one spike per step, and listed in
`graph.meta["nir"]["assumptions"]`; `graph.meta["nir"]` also says which dt was used, where
it came from, and whether it was guessed (the compile report and stderr say so).

A bias on a synapse (Affine, Conv2d) adds a constant to the current. When the next neuron
has no current state (LIF, IF, Threshold, or CubaLIF with tau_syn = dt) it is exactly an
LIF (voltage) bias and becomes one. Into a CubaLIF (or CubaLI) current that decays it
builds up over the first steps: it stays the synapse's bias (`Dense.bias`, `Conv2d.bias`,
per output channel), which the chip computes exactly with an always-on bias axon (see
`FxDense`). A bias that reaches the neuron through a pool, or that varies within a conv
channel, is refused.

A non-spiking leaky-integrator readout (NIR `LI`, `CubaLI`: sinabs ExpLeak, norse
LIBoxCell/LICell, rockpool ExpSynTorch) is accepted as the node before Output only (its
real-valued voltage cannot feed a synapse) and becomes an `LI` node. Each convention reads
it as the library computes it, in Loihi's order (`_Builder._readout`):

    u = (1 - du) u + x      v = (1 - dv) v + gain u + dv v_leak      from u = 0, v = v0

sinabs: dv = 1 - exp(-1/tau), gain r; rockpool: dv = 1 - exp(-dt/tau), gain r dt / tau;
norse: tau / dt, dv = dt/tau, gain dv r w_in, v0 = v_leak (norse's initial state); NIR:
forward Euler, gain dv r du w_in. `gain` is folded into the feeding Linear/Affine/Conv2d
(one value per output channel), the state runs as v - v0 (bias dv v_leak - dv v0, plus
gain times a synapse bias when du = 1), and v0 becomes the node's `offset`. The decision
(argmax of the voltage's last value, sum or maximum over the steps) is norse's `max`,
else `sum`, or the caller's (`decision=`), recorded in the node, in
`graph.meta["nir"]["readout"]` and in the assumptions.

    >>> graph = import_nir("model.nir")            # convention and dt from the file
    >>> graph = import_nir("model.nir", dt=1e-3)   # dt for a file that does not record it
"""
from __future__ import annotations

import math
import re
import warnings
from pathlib import Path

import numpy as np

from snncompile.errors import InputFileError, UnsupportedError, is_max_pool, max_pool_refused
from snncompile.ir import (LI, LIF, READOUT_DECISIONS, AvgPool2d, Conv1d, Conv2d, Dense,
                           Flatten, Graph, Input, Output, SumPool2d, RecDense)
from snncompile.formats.h5safe import read_hdf5

SUPPORTED = ("Input", "Output", "Affine", "Linear", "Conv2d", "Conv1d", "SumPool2d",
             "AvgPool2d", "Delay", "Flatten", "Scale", "LIF", "CubaLIF", "IF", "Threshold",
             "LI", "CubaLI")
CONVENTIONS = ("nir", "snncompile", "snntorch", "sinabs", "spikingjelly", "rockpool", "norse")
"""Exporter conventions `import_nir` knows (see the module docstring)."""
DEFAULT_DT = {"nir": 1e-3, "norse": 1e-3, "spikingjelly": 1e-4, "snntorch": 1e-4}
"""The dt guessed when a file of that convention does not record one: the exporters'
defaults (norse.torch.to_nir dt=1e-3, spikingjelly export_to_nir dt=1e-4, snnTorch 1e-4)."""
SNNTORCH_DT = 1e-4
"""snnTorch 1.0.0's export_to_nir writes Leaky/Synaptic with this dt, hard-coded."""
MAX_DENSE_KERNEL = 1 << 28
"""Most weights a dilated Conv1d may become as its dense kernel (as the training layers')."""
_REL_TOL = 1e-6  # per-neuron parameters closer than this count as one per-layer value
_DT_TOL = 1e-5   # two dt implied by float32 parameters of one file agree to this
_NEURONS = ("LIF", "CubaLIF", "IF")
_READOUTS = ("LI", "CubaLI")  # non-spiking leaky readouts: only as the node before Output
_SUMS = _NEURONS + ("Threshold",) + _READOUTS  # may add the currents of several synapses
_FANS_OUT = ("Input", "Flatten", "Threshold") + _NEURONS  # spikes: may feed several nodes
_ASSUME = {
    "nir": ["forward-Euler discretisation of the NIR equations with step dt",
            "reset to v_reset (= 0) after a spike, one spike per step (NIR states neither)"],
    "snncompile": ["written by snncompile's export: forward Euler with the recorded dt is "
                   "the exported LIF exactly"],
    "snntorch": ["Leaky/Synaptic: tau = dt/(1-beta), r = tau/dt with export_to_nir's "
                 "hard-coded dt: decay 1-beta, input gain 1 (exact)",
                 "reset to zero after a spike: export_to_nir does not record "
                 "reset_mechanism, and snnTorch's default 'subtract' takes the threshold off "
                 "after the decay (mem = beta*mem + x - s*thr), which no LIF reset option "
                 "computes unless beta = 1 (snncompile's 'subtract' decays it: v = "
                 "beta*(v - vth) + x); train with reset_mechanism='zero' to match"],
    "sinabs": ["time constants are in steps (dt = 1 step); decay exp(-1/tau_mem) per step "
               "as sinabs computes it",
               "LIF input scaled by 1 - exp(-1/tau_mem) (sinabs' default norm_input=True; "
               "to_nir writes r = 1 either way)",
               "reset by subtraction, spike at v >= threshold (sinabs' default "
               "MembraneSubtract; LIF reset 'subtract', fire_at '>='), one spike per step: "
               "to_nir records neither reset_fn nor spike_fn; train with SingleSpike (the "
               "default MultiSpike emits floor(v / threshold) spikes) and MembraneSubtract"],
    "spikingjelly": ["tau written as tau_steps * dt: forward Euler with that dt decays by "
                     "1/tau_steps per step (exact); IF r = 1/dt",
                     "hard reset to v_reset (export_to_nir refuses soft reset), spike at v >= "
                     "v_threshold as spikingjelly fires (LIF fire_at '>=')"],
    "rockpool": ["w_in is not written: the synaptic input enters isyn with gain 1 "
                 "(LIFTorch's update), recovered from rockpool's rule; decays "
                 "exp(-dt/tau) with dt solved from r = tau/dt * exp(-dt/tau)",
                 "v_leak is written as 0 whatever LIFTorch.bias is: a trained bias is "
                 "dropped by rockpool's exporter",
                 "reset by subtraction at v >= threshold, as LIFTorch computes (LIF reset "
                 "'subtract', fire_at '>='), one spike per step: rockpool emits up to "
                 "max_spikes_per_dt spikes (train with max_spikes_per_dt=1)"],
    "norse": ["tau written as tau * dt (norse#411): divided by dt",
              "input current added with gain 1 (norse's LIFCell adds x to i unscaled), IF "
              "r is the gain per step",
              "reset to v_reset after a spike, one spike per step (as norse)"],
}


_SPIKING = {"sinabs": ("subtract", ">="), "spikingjelly": ("zero", ">="),
            "rockpool": ("subtract", ">=")}
"""(reset, fire_at) of the LIF nodes a convention's exporter means (NIR records neither:
the library's own neuron decides, see _ASSUME); others: ("zero", ">")."""

_ASSUME_LI = {
    "nir": "{kind} readout: forward Euler of tau_mem dv/dt = v_leak - v + r I (CubaLI: "
           "tau_syn dI/dt = -I + w_in x) with step dt, from v = 0",
    "snncompile": "{kind} readout written by snncompile's export: forward Euler with the "
                  "recorded dt, from v = 0",
    "sinabs": "{kind} readout (sinabs ExpLeak): v = exp(-1/tau) v + x per step, "
              "norm_input=False (ExpLeak's default and what sinabs' from_nir builds; to_nir "
              "writes r = 1 either way)",
    "rockpool": "{kind} readout (rockpool ExpSynTorch): isyn = (isyn + x) exp(-dt/tau), "
                "written as r = tau/dt exp(-dt/tau): input gain r dt / tau, from 0",
    "norse": "{kind} readout (norse LIBoxCell/LICell): tau written as tau * dt, input added "
             "with gain 1; the voltage starts at v_leak (norse's initial_state), kept as an "
             "offset added to the read voltage",
}
"""How each convention's LI/CubaLI readout is read (added to the assumptions when a file
has one); conventions missing here have no exporter that writes a readout."""
_ASSUME_CUBALI_NORSE = ("CubaLI readout: norse 1.1.0's to_nir cannot write LICell; read as "
                        "written by hand in norse's convention (tau = dt / tau_inv, r = 1, "
                        "w_in = 1)")
DEFAULT_DECISION = {"norse": ("max", "norse's task scripts take the maximum over time")}
"""Readout decision per convention where the library defines one; elsewhere "sum"."""


def import_nir(source, dt: float | None = None, *, convention: str | None = None,
               norse_quirks: bool | None = None, decision: str | None = None) -> Graph:
    """Read a NIR file (path) or a `nir.NIRGraph` into a float `Graph`.

    dt: simulation step in seconds, for files that do not record it (a file that does and
    disagrees is refused). None: from the file, else the convention's default (guessed,
    `graph.meta["nir"]["dt_guessed"]`).
    convention: one of `CONVENTIONS`; None detects it from what the exporter writes.
    norse_quirks: older spelling of convention="norse" (True) / "nir" (False).
    decision: for a file ending in an LI/CubaLI readout, how a class is picked (one of
    READOUT_DECISIONS); None: the source library's rule (`DEFAULT_DECISION`), else "sum".

        >>> g = import_nir("net.nir"); g.meta["nir"]["dt"], g.meta["nir"]["dt_source"]
        (0.0001, 'recorded by the exporter: r = tau / dt (snnTorch)')
    """
    if dt is not None and not (dt > 0 and math.isfinite(dt)):
        raise UnsupportedError(f"import_nir: dt ({dt}) must be a positive number of seconds")
    if convention is None and norse_quirks is not None:
        convention = "norse" if norse_quirks else "nir"
    if convention is not None and convention not in CONVENTIONS:
        raise UnsupportedError(f"import_nir: convention '{convention}' is unknown; known: "
                               + ", ".join(CONVENTIONS))
    if decision is not None and decision not in READOUT_DECISIONS:
        raise UnsupportedError(f"import_nir: readout decision '{decision}' is unknown; known: "
                               + ", ".join(READOUT_DECISIONS))
    nirgraph, where = _load(source)
    nirgraph, loops = _without_recurrence(nirgraph, where)
    chain = _chain(nirgraph, where)
    metadata = nirgraph.metadata if isinstance(nirgraph.metadata, dict) else {}
    if convention is None:
        convention, why = _detect(chain, metadata, where)
    else:
        why = "named by the caller: --nir-convention"
    step, step_source, guessed = _resolve_dt(convention, chain, metadata, dt, where)
    info = {"convention": convention, "convention_source": why, "dt": step,
            "dt_unit": "step" if convention == "sinabs" else "s", "dt_source": step_source,
            "dt_guessed": guessed, "assumptions": list(_ASSUME[convention]), "warnings": []}
    if guessed:
        info["warnings"].append(
            f"{where}: the file does not record its time step; assumed dt = {step:g} s "
            f"({step_source}); pass --dt if the exporter used another")
    quirks: list[str] = []
    meta = {"source": where, "frontend": "nir", "dt": step, "discretisation": (
                "exponential" if convention in ("sinabs", "rockpool") else "forward-euler"),
            "nir": info, "nir_quirks": quirks, "nir_approximation": []}
    return _Builder(step, convention, meta, decision, loops).build(chain, nirgraph.edges)


# ---------------------------------------------------------------- exporter conventions
def _params_of(node, *keys):
    out = []
    for key in keys:
        v = getattr(node, key, None)
        try:
            out.append(None if v is None else _arr(v))
        except (TypeError, ValueError):
            raise InputFileError(f"NIR {_type(node)} node: {key} is not numeric "
                                 f"({type(v).__name__})") from None
    return out


def _all_equal(a, value) -> bool:
    return a is not None and a.size > 0 and bool(np.all(a == value))


def _detect(chain, metadata: dict, where: str) -> tuple[str, str]:
    """(convention, why): from what the exporter writes; see the module docstring."""
    if str(metadata.get("exporter", "")) == "snncompile":
        return "snncompile", "graph metadata exporter = snncompile"
    names = [str(k) for k, _ in chain]
    neurons = [(k, n) for k, n in chain if _type(n) in _NEURONS]
    if any(re.search(r"_(LIFTorch|LIFNeuronTorch|LinearTorch|ExpSynTorch)$", k)
           for k in names):
        return "rockpool", "node names '<i>_LIFTorch'/'<i>_LinearTorch' (rockpool's to_nir)"
    if any(re.fullmatch(r"_\d+", k) for k in names):
        return "spikingjelly", ("node names '_0', '_1', ... (spikingjelly's export_to_nir "
                                "traces with torch.fx)")
    for _, n in neurons:
        if _type(n) == "CubaLIF":
            r, w_in = _params_of(n, "r", "w_in")
            if _all_equal(r, 1) and (w_in is None or _all_equal(w_in, 1)):
                return "norse", "CubaLIF with r = 1 and w_in = 1 (norse's LIFCell)"
    unit = _unit_gain_dt(neurons) if neurons else None
    if all(_type(n) != "IF" for _, n in neurons) and unit is not None and \
            math.isclose(unit, SNNTORCH_DT, rel_tol=_DT_TOL):
        return "snntorch", ("every LIF/CubaLIF has r = tau / 1e-4 (and w_in = tau_syn / "
                            "1e-4): snnTorch's export_to_nir hard-codes dt = 1e-4")
    ifs = [n for _, n in neurons if _type(n) == "IF"]
    lifs = [n for _, n in neurons if _type(n) == "LIF"]
    r1 = [n for n in ifs + lifs if _all_equal(_params_of(n, "r")[0], 1)]
    if neurons and len(r1) == len(neurons):
        if any(_params_of(n, "r")[0].ndim > 0 for n in ifs):
            return "sinabs", "IF with r = 1 written per neuron (sinabs' to_nir)"
        if not lifs:
            return "norse", ("IF nodes with r = 1 (norse's IAFCell; sinabs' reading, r = "
                             "gain per step, is the same)")
        raise UnsupportedError(
            f"{where}: cannot tell which exporter wrote these LIF nodes with r = 1 (norse "
            "writes tau * dt there, sinabs tau in steps, spikingjelly tau_steps * dt); pass "
            "--nir-convention norse, sinabs, spikingjelly or nir")
    return "nir", "no exporter convention recognised: the NIR equations as written"


def _unit_gain_dt(neurons) -> float | None:
    """The one D with r = tau_mem / D (and w_in = tau_syn / D) in every LIF/CubaLIF, else
    None (snnTorch and spikingjelly's CUBALIF write their dt this way)."""
    found = []
    with np.errstate(all="ignore"):
        for _, n in neurons:
            tau, r = _params_of(n, "tau_mem" if _type(n) == "CubaLIF" else "tau", "r")
            pairs = [(tau, r)]
            if _type(n) == "CubaLIF":
                pairs.append(tuple(_params_of(n, "tau_syn", "w_in")))
            for t, g in pairs:
                if t is None or g is None or t.size == 0 or g.size == 0:
                    return None
                try:
                    d = np.broadcast_arrays(t, g)
                except ValueError:
                    return None
                d = d[0] / d[1]
                if not np.all(np.isfinite(d)) or np.any(d <= 0) or _all_equal(g, 1):
                    return None
                found.append(d.ravel())
    if not found:
        return None
    d = np.concatenate(found)
    if np.max(np.abs(d / d[0] - 1)) > _DT_TOL:
        return None
    return float(f"{float(d[0]):.6g}")


def _rockpool_dt(chain, where: str) -> float:
    """Solve rockpool's r = tau / dt * exp(-dt / tau) for dt (x = dt/tau: x + ln x = -ln r,
    Newton), every neuron layer agreeing."""
    found = []
    for key, n in chain:
        if _type(n) not in ("LIF", "CubaLIF", "LI"):   # ExpSynTorch writes LI the same way
            continue
        tau, r = _params_of(n, "tau_mem" if _type(n) == "CubaLIF" else "tau", "r")
        t, g = _one(tau, "tau", where), _one(r, "r", where)
        if not (t > 0 and g > 0 and math.isfinite(t) and math.isfinite(g)):
            raise UnsupportedError(f"NIR node '{key}': tau ({t}) and r ({g}) must be finite "
                                   "and > 0 for rockpool's r = tau/dt * exp(-dt/tau)")
        x = 1.0 / g
        for _ in range(60):
            x = max(x - (x + math.log(x) + math.log(g)) / (1.0 + 1.0 / x), x / 10)
        found.append((key, x * t))
    if not found:
        raise UnsupportedError(f"{where}: rockpool convention but no LIF/CubaLIF/LI node to "
                               "recover dt from; pass --nir-convention nir --dt")
    for key, d in found:
        if abs(d / found[0][1] - 1) > 1e-4:
            raise UnsupportedError(
                f"{where}: layers '{found[0][0]}' and '{key}' imply different dt "
                f"({found[0][1]:.6g}, {d:.6g} s) under rockpool's r = tau/dt * exp(-dt/tau); "
                "pass --nir-convention and --dt")
    return float(f"{found[0][1]:.6g}")


def _resolve_dt(convention: str, chain, metadata: dict, dt: float | None,
                where: str) -> tuple[float, str, bool]:
    """(dt, where it came from, guessed)."""
    recorded, source = None, ""
    neurons = [(k, n) for k, n in chain if _type(n) in _NEURONS]
    if convention == "sinabs":
        if dt is not None:
            raise UnsupportedError(f"{where}: --dt ({dt}) does not apply: sinabs writes time "
                                   "constants in steps (dt = 1 step)")
        return 1.0, "sinabs writes time constants in steps", False
    if "dt" in metadata:
        try:
            recorded = float(np.asarray(metadata["dt"], dtype=np.float64).ravel()[0])
        except (TypeError, ValueError, IndexError):
            raise InputFileError(f"{where}: metadata dt ({metadata['dt']!r}) is not a "
                                 "number") from None
        source = "graph metadata 'dt'"
    elif convention == "snntorch":
        recorded = _unit_gain_dt(neurons)
        source = "recorded by the exporter: r = tau / dt (snnTorch)"
    elif convention == "rockpool":
        recorded = _rockpool_dt(chain, where)
        source = "recorded by the exporter: r = tau / dt * exp(-dt / tau) (rockpool)"
    elif convention == "spikingjelly":
        rs = [_arr(n.r).ravel() for _, n in neurons if _type(n) == "IF"]
        lifs = [(k, n) for k, n in neurons if _type(n) != "IF"]
        cuba = _unit_gain_dt(lifs) if lifs else None  # CUBALIF, LIF with decay_input=False
        if rs:
            r = np.concatenate(rs)
            if np.all(np.isfinite(r)) and np.all(r > 0) and np.allclose(r, r[0], rtol=_DT_TOL):
                recorded, source = float(f"{1.0 / float(r[0]):.6g}"), \
                    "recorded by the exporter: IF r = 1 / dt (spikingjelly)"
        elif cuba is not None:
            recorded, source = cuba, "recorded by the exporter: r = tau / dt (spikingjelly)"
    if recorded is not None:
        if not (recorded > 0 and math.isfinite(recorded)):
            raise InputFileError(f"{where}: the file's dt ({recorded}) is not a positive "
                                 "number")
        if dt is not None and not math.isclose(dt, recorded, rel_tol=_DT_TOL):
            raise UnsupportedError(f"{where}: --dt {dt:g} contradicts the dt the file "
                                   f"records ({recorded:g} s, {source}); drop --dt")
        return recorded, source, False
    if dt is not None:
        return float(dt), "given by the caller: --dt", False
    guess = DEFAULT_DT.get(convention, DEFAULT_DT["nir"])
    per_step_if = convention in ("norse", "sinabs")
    if not any(_type(n) in ("LIF", "CubaLIF", "Delay") + _READOUTS or (_type(n) == "IF" and not
                                                           per_step_if) for _, n in chain):
        return guess, "not used: the file has no time constants or delays", False
    why = {"norse": "norse.torch.to_nir's default",
           "spikingjelly": "spikingjelly export_to_nir's default",
           "snntorch": "snnTorch export_to_nir's hard-coded dt"}.get(
        convention, "snncompile's default for NIR files without a time step")
    return guess, why, True


# ---------------------------------------------------------------- reading and structure
def _load(source):
    import nir

    if isinstance(source, nir.NIRGraph):
        return source, "<NIRGraph>"
    path = Path(source)
    if not path.is_file():
        raise InputFileError(f"{path}: NIR file not found")
    tree = None
    try:
        with warnings.catch_warnings():  # nir/numpy warn on odd contents: not for users
            warnings.simplefilter("ignore")
            # checked (no external data, sizes and heap records bounded), then read in the
            # walk that checked it; what nir.read does with the file's "node" group after
            tree = read_hdf5(path, "NIR file")
            data = _strings(tree["node"])
            if "type_check" in data:
                raise ValueError("the 'type_check' key was found in the NIR graph; it "
                                 "clashes with the reader's type-check parameter")
            data["type_check"] = False
            return nir.dict2NIRNode(data), path.name
    except InputFileError:
        raise
    except Exception as exc:  # h5py/nir raise OSError, KeyError, ValueError, AssertionError...
        _refuse_max_pool_in_tree(path, tree)
        text = " ".join(str(exc).split())[:200]
        raise InputFileError(f"{path}: not a readable NIR file ({type(exc).__name__}: "
                             f"{text})") from None


def _strings(tree) -> dict:
    """nir.serialization.hdf2dict on a `read_hdf5` tree: bytes values become str."""
    if not isinstance(tree, dict):
        raise KeyError("'node' is a dataset, not a group")
    return {k: _strings(v) if isinstance(v, dict) else
            (v.decode("utf8") if isinstance(v, bytes) else v) for k, v in tree.items()}


def _refuse_max_pool_in_tree(path, tree) -> None:
    """nir has no max-pool node class, so reading fails on a file naming one: say why."""
    found = []

    def visit(node, trail):
        for key, value in node.items():
            if isinstance(value, dict):
                visit(value, trail + [key])
            elif key == "type" and trail and np.ndim(value) == 0:
                kind = value.decode(errors="replace") if isinstance(value, bytes) \
                    else str(value)
                if is_max_pool(kind):
                    found.append((trail[-1], kind))
    if isinstance(tree, dict):
        visit(tree, [])
    if found:
        raise max_pool_refused(f"{path.name}: node '{found[0][0]}'", found[0][1])


def _type(node) -> str:
    return type(node).__name__


def _chain(g, where: str) -> list[tuple[str, object]]:
    """The nodes of a feed-forward DAG Input -> ... -> Output, in topological order
    (a chain, or residual paths: a spike source feeding several synapses, a neuron summing
    the currents of several synapses)."""
    import nir

    for name, node in g.nodes.items():
        if node is None:
            raise UnsupportedError(f"{where}: node '{name}' is empty (the exporter could not "
                                   "translate that layer); supported: " + ", ".join(SUPPORTED))
        if isinstance(node, nir.NIRGraph):
            raise UnsupportedError(f"{where}: node '{name}' is a nested graph (a recurrent "
                                   "layer?); only feed-forward graphs are supported")
        if is_max_pool(_type(node)):
            raise max_pool_refused(f"{where}: node '{name}'", _type(node))
        if _type(node) not in SUPPORTED:
            raise UnsupportedError(f"{where}: node '{name}' has unsupported type "
                                   f"{_type(node)}; supported: " + ", ".join(SUPPORTED))
    succ, pred = _links(g, where)
    inputs = [n for n, v in g.nodes.items() if _type(v) == "Input"]
    outputs = [n for n, v in g.nodes.items() if _type(v) == "Output"]
    if len(inputs) != 1 or len(outputs) != 1:
        raise UnsupportedError(f"{where}: needs exactly one Input and one Output, has "
                               f"{len(inputs)} and {len(outputs)}")
    order = _topological(g, where, pred, succ)
    for n, node in g.nodes.items():
        _check_fan(where, n, _type(node), pred[n], succ[n])
    dead = sorted(n for n in g.nodes if n != outputs[0] and not succ[n])
    if dead:
        raise UnsupportedError(f"{where}: node(s) {dead} lead nowhere; every path must end "
                               "at the Output")
    return order


class _Forward:
    """A NIR graph's nodes and edges without its recurrent synapses (`_without_recurrence`)."""

    def __init__(self, nodes: dict, edges: list, metadata):
        self.nodes, self.edges, self.metadata = nodes, edges, metadata


def _without_recurrence(g, where: str):
    """(the graph without its recurrent layers' synapses, {neuron key: (synapse key,
    synapse)}). A recurrent layer is a cycle neuron -> W -> neuron through a Linear or
    Affine W whose only input and only output are that spiking neuron (snnTorch's RLeaky
    writes `lif` <-> `w_rec`); it becomes a RecDense, which delivers the neuron's spikes of
    step t - 1 at step t (a NIR cycle has no delay of its own: one step is the only causal
    reading, and what snnTorch's RLeaky computes). Other cycles stay for `_chain` to refuse."""
    nodes = getattr(g, "nodes", None)
    edges = list(getattr(g, "edges", None) or [])
    if not isinstance(nodes, dict):
        return g, {}
    succ: dict = {}
    pred: dict = {}
    for src, dst in edges:
        succ.setdefault(src, []).append(dst)
        pred.setdefault(dst, []).append(src)
    loops = {}
    for key, node in nodes.items():
        ins, outs = pred.get(key, []), succ.get(key, [])
        if _type(node) in ("Linear", "Affine") and len(ins) == 1 and outs == ins \
                and _type(nodes.get(ins[0])) in _NEURONS + ("Threshold",):
            if ins[0] in loops:
                raise UnsupportedError(f"{where}: neuron '{ins[0]}' has two recurrent "
                                       f"synapses ('{loops[ins[0]][0]}', '{key}'); supported: "
                                       "one per layer")
            loops[ins[0]] = (key, node)
    if not loops:
        return g, {}
    drop = {k for k, _ in loops.values()}
    return _Forward({k: v for k, v in nodes.items() if k not in drop},
                    [e for e in edges if e[0] not in drop and e[1] not in drop],
                    getattr(g, "metadata", None)), loops


def _links(g, where: str) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    succ: dict[str, list[str]] = {n: [] for n in g.nodes}
    pred: dict[str, list[str]] = {n: [] for n in g.nodes}
    for src, dst in g.edges:
        for end in (src, dst):
            if end not in g.nodes:
                raise InputFileError(f"{where}: edge ({src}, {dst}) names a missing node")
        if src == dst:
            raise UnsupportedError(f"{where}: recurrent edge {src} -> {dst}; only "
                                   "feed-forward graphs are supported")
        if dst in succ[src]:
            raise InputFileError(f"{where}: edge ({src}, {dst}) is given twice")
        succ[src].append(dst)
        pred[dst].append(src)
    return succ, pred


def _check_fan(where: str, n: str, kind: str, ins: list[str], outs: list[str]) -> None:
    """Fan-in only into neurons (their synaptic currents add); fan-out only from spikes."""
    if len(ins) > 1 and kind not in _SUMS:
        raise UnsupportedError(f"{where}: node '{n}' ({kind}) has {len(ins)} inputs "
                               f"{sorted(ins)}; only a neuron layer may sum several synapses")
    if len(outs) > 1 and kind not in _FANS_OUT:
        raise UnsupportedError(f"{where}: node '{n}' ({kind}) feeds {len(outs)} nodes "
                               f"{sorted(outs)}; only the Input, a Flatten or a spiking "
                               "neuron layer may feed several")


def _topological(g, where: str, pred, succ) -> list[tuple[str, object]]:
    """Kahn's order (ties in the file's node order); a cycle is refused by name."""
    left = {n: len(pred[n]) for n in g.nodes}
    ready = [n for n in g.nodes if not left[n]]
    order = []
    while ready:
        cur = ready.pop(0)
        order.append((cur, g.nodes[cur]))
        for nxt in succ[cur]:
            left[nxt] -= 1
            if not left[nxt]:
                ready.append(nxt)
    if len(order) != len(g.nodes):
        cyc, drop = {n for n in g.nodes if left[n]}, True
        while drop:  # keep the nodes on the cycle(s): drop those merely after one
            drop = {n for n in cyc if not any(o in cyc for o in succ[n])}
            cyc -= drop
        cyc = sorted(cyc)
        raise UnsupportedError(f"{where}: the edges form a cycle through {cyc}; recurrent "
                               "graphs are not supported (feed-forward DAGs only)")
    for name, node in order:
        if _type(node) in _READOUTS and any(_type(g.nodes[o]) != "Output" for o in succ[name]):
            after = [o for o in succ[name] if _type(g.nodes[o]) != "Output"][0]
            raise UnsupportedError(
                f"{where}: node '{name}' is a {_type(node)}, a non-spiking leaky readout, "
                f"followed by '{after}' ({_type(g.nodes[after])}); its real-valued voltage "
                "cannot feed a synapse on Loihi, so it is supported only as the node before "
                "Output")
    return order


def _arr(x) -> np.ndarray:
    if hasattr(x, "detach"):  # norse hands over torch tensors
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=np.float64)


def _name(key: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", str(key)) or "node"


def _pair(v, what: str, where: str) -> tuple[int, int]:
    a = np.asarray(v).ravel()
    if a.size == 1:
        a = np.repeat(a, 2)
    if a.size != 2:
        raise UnsupportedError(f"{where}: {what} ({v}) must be one or two integers")
    if not np.all(np.isfinite(a.astype(float))) or np.any(np.abs(a.astype(float)) > 65535):
        raise UnsupportedError(f"{where}: {what} ({v}) is out of range (|value| <= 65535)")
    return int(a[0]), int(a[1])


def _single(v, what: str, where: str) -> int:
    """One integer from an int or a 1-element array (sinabs writes PyTorch's 1-tuples)."""
    a = np.asarray(v).ravel()
    if a.size != 1:
        raise UnsupportedError(f"{where}: {what} ({v}) must be one integer")
    return _pair(a, what, where)[0]


# ---------------------------------------------------------------- translation
class _Builder:
    """Walks the chain keeping the current per-step shape, a constant added to the signal
    by synapse biases (`bias`), and a per-element scale waiting for the next synapse."""

    def __init__(self, dt: float, convention: str, meta: dict, decision: str | None = None,
                 loops: dict | None = None):
        self.dt, self.conv, self.meta = dt, convention, meta
        self.loops = loops or {}        # neuron key -> (synapse key, recurrent synapse)
        self.recurrent: dict = {}       # LIF name -> its RecDense
        self.rec: RecDense | None = None  # the recurrent synapse of the neuron being built
        self.decision = decision  # the caller's readout decision (None: the library's)
        self.norse = convention == "norse"
        self.exact = convention in ("sinabs", "rockpool")  # decay exp(-dt/tau) per step
        self.nodes: list = []
        self.shape: tuple[int, ...] = ()
        self.bias: np.ndarray | None = None
        self.in_scale: np.ndarray | None = None
        self.in_delay: np.ndarray | None = None  # steps per input, for the next Linear

    def build(self, chain, edges) -> Graph:
        succ: dict[str, list[str]] = {k: [] for k, _ in chain}
        pred: dict[str, list[str]] = {k: [] for k, _ in chain}
        for src, dst in edges:
            succ[src].append(dst)
            pred[dst].append(src)
        nodes, states, ins = dict(chain), {}, {}
        for key, node in chain:
            name, where = _name(key), f"NIR node '{key}' ({_type(node)})"
            nxt = nodes[succ[key][0]] if succ[key] else None
            self._enter([states[k] for k in pred[key]], where)
            if key in self.loops:
                self._recurrent_synapse(name, *self.loops[key], where)
            before = len(self.nodes)
            try:
                getattr(self, "_" + _type(node).lower())(name, node, where, nxt)
            except (ValueError, TypeError, OverflowError) as exc:
                # a hostile file: a string where numbers belong, an infinite size...
                raise InputFileError(f"{self.meta['source']}: {where}: malformed parameter "
                                     f"({type(exc).__name__}: {str(exc)[:100]})") from None
            if self.rec is not None:
                self.recurrent[self.nodes[-1].name], self.rec = self.rec, None
            for new in self.nodes[before:]:
                ins[new.name], self.feeds = self.feeds, [new]
            states[key] = (self.shape, self.bias, self.in_scale, self.in_delay, self.feeds)
        graph = Graph(self.meta)
        for node in self.nodes:
            rec = self.recurrent.get(node.name)
            if rec is not None:       # a back edge: declared before the layer, fed from it
                graph.add_delay(rec, node.shape)
            graph.add(node, [n.name for n in ins[node.name]] + ([rec.name] if rec else []))
            if rec is not None:
                graph.connect(node.name, rec.name)
        graph.validate()
        return graph

    def _recurrent_synapse(self, name, key, node, where):
        """The recurrent Linear/Affine `node` of the neuron `name` being entered: a
        RecDense in the units of the neuron's other synapses; an Affine's bias is one more
        constant current (added to theirs)."""
        where = f"NIR node '{key}' ({_type(node)}), recurrent into '{name}'"
        w = _finite(_arr(node.weight), "weight", where)
        if self.shape != (w.shape[0],) or w.ndim != 2 or w.shape[0] != w.shape[1]:
            raise UnsupportedError(f"{where}: weight {w.shape} must be square ({self.shape} "
                                   "neurons back into themselves)")
        b = _finite(_arr(node.bias), "bias", where).reshape(-1) \
            if _type(node) == "Affine" else None
        if b is not None and np.any(b):
            self.bias = b.astype(np.float64) if self.bias is None else self.bias + b
        self.rec = RecDense(_name(key), weight=w.astype(np.float32))

    def _enter(self, states, where):
        """Take over the walk's state from the node(s) feeding this one; several (a
        neuron summing residual paths) must each end in a synapse of the same shape, and
        their synapse biases add."""
        if len(states) <= 1:
            self.shape, self.bias, self.in_scale, self.in_delay, self.feeds = (
                states[0] if states else ((), None, None, None, []))
            return
        shapes = {st[0] for st in states}
        feeds = [f for st in states for f in st[4]]
        if len(shapes) > 1:
            raise UnsupportedError(f"{where}: its inputs have different shapes "
                                   f"{sorted(shapes)}; summed currents must match")
        bad = [f.name for f in feeds if not f.is_synapse]
        if bad or any(st[2] is not None or st[3] is not None for st in states):
            raise UnsupportedError(f"{where}: with several inputs each must come straight "
                                   "from a Linear, Affine or Conv2d (not "
                                   f"{bad or 'a Scale/Delay'})")
        biases = [st[1] for st in states if st[1] is not None]
        self.shape, self.in_scale, self.in_delay, self.feeds = shapes.pop(), None, None, feeds
        self.bias = sum(biases[1:], biases[0]) if biases else None

    def _last(self):
        """The one IR node feeding the current one (None: none or several)."""
        return self.feeds[0] if len(self.feeds) == 1 else None

    # ---- structure
    def _input(self, name, node, where, nxt):
        shape = tuple(int(s) for s in np.asarray(node.input_type["input"]).ravel())
        want = _expected_rank(nxt)
        if want is not None and len(shape) > want:
            # exporters tracing with a sample write its batch (snnTorch, norse, rockpool) or
            # time (sinabs' IAF on (batch, time, ...)) dimensions into the input type
            lead, shape = shape[:len(shape) - want], shape[len(shape) - want:]
            note = (f"input type {lead + shape} has leading dimension(s) {lead} (the "
                    f"exporter's sample batch/time); per-step input shape {shape}")
            self.meta["nir_quirks"].append(note)
            self.meta["nir"]["assumptions"].append(note)
        self.shape = shape
        self.nodes.append(Input(name, shape=shape))

    def _output(self, name, node, where, nxt):
        if not isinstance(self._last(), (LIF, LI)):
            raise UnsupportedError(f"{where}: the output must be fed by a spiking neuron "
                                   "layer (LIF, CubaLIF, IF, Threshold) or a leaky readout "
                                   "(LI, CubaLI)")
        if self.in_scale is not None:
            raise UnsupportedError(f"{where}: a Scale on the output spikes cannot be "
                                   "compiled; outputs are spike counts")
        self.nodes.append(Output(name))

    def _flatten(self, name, node, where, nxt):
        n = int(np.prod(self.shape))
        if self.bias is not None:
            self.bias = self.bias.reshape(n)
        if self.in_scale is not None:
            self.in_scale = self.in_scale.reshape(n)
        self.shape = (n,)
        self.nodes.append(Flatten(name))

    def _pool(self, cls, name, node, where):
        k = _pair(node.kernel_size, "kernel_size", where)
        if _pair(node.stride, "stride", where) != k:
            raise UnsupportedError(f"{where}: stride ({node.stride}) differs from the kernel "
                                   f"({k}); only non-overlapping pools are supported")
        if any(_pair(node.padding, "padding", where)):
            raise UnsupportedError(f"{where}: padding ({node.padding}) is not supported")
        if self.in_scale is not None and not _uniform(self.in_scale):
            raise UnsupportedError(f"{where}: a per-element Scale before a pool cannot be "
                                   "moved into the next synapse")
        pool = cls(name, kernel=k)
        self.nodes.append(pool)
        if self.bias is not None:  # pooling is linear: a constant map pools to a constant
            self.bias = _np_pool(self.bias, k, average=cls is AvgPool2d)
        if self.in_scale is not None:
            self.in_scale = np.full(pool.out_shape([self.shape]), self.in_scale.flat[0])
        self.shape = pool.out_shape([self.shape])

    def _sumpool2d(self, name, node, where, nxt):
        self._pool(SumPool2d, name, node, where)

    def _avgpool2d(self, name, node, where, nxt):
        self._pool(AvgPool2d, name, node, where)

    # ---- synapses
    def _linear(self, name, node, where, nxt, bias=None):
        w = _finite(_arr(node.weight), "weight", where)
        if w.ndim != 2:
            raise UnsupportedError(f"{where}: weight of shape {w.shape} is not 2-D")
        if self.shape != (w.shape[1],):
            raise UnsupportedError(f"{where}: expects input ({w.shape[1]},), gets "
                                   f"{self.shape}")
        self._check_free(where)
        if self.in_scale is not None:
            w = w * self.in_scale.reshape(1, -1)
            self.in_scale = None
        delay = None
        if self.in_delay is not None:  # a Delay on the inputs: per column of the weights
            delay = np.repeat(self.in_delay.reshape(1, -1), w.shape[0], axis=0)
            self.in_delay = None
        self.nodes.append(Dense(name, weight=w.astype(np.float32), delay=delay))
        self.shape = (w.shape[0],)
        self._set_bias(bias, where)

    def _delay(self, name, node, where, nxt):
        """A Delay in front of a Linear/Affine becomes per-synapse delays of that layer:
        round(delay / dt) steps, in [0, 62] (Loihi 2's delay field)."""
        if _type(nxt) not in ("Linear", "Affine") or self.in_scale is not None \
                or self.bias is not None:
            raise UnsupportedError(f"{where}: a Delay is supported only directly in front of "
                                   "a Linear or Affine layer (it becomes that layer's "
                                   "synaptic delays)")
        d = np.broadcast_to(_arr(node.delay).astype(np.float64), self.shape)
        steps = np.round(d / self.dt)
        if not np.all(np.isfinite(steps)) or steps.min() < 0 or steps.max() > 62:
            raise UnsupportedError(f"{where}: delay / dt spans [{steps.min()}, {steps.max()}] "
                                   "steps; Loihi 2 holds 0 .. 62")
        err = float(np.abs(steps * self.dt - d).max())
        if err > 1e-9:
            self.meta["nir_quirks"].append(f"{name}: delays rounded to whole steps of dt "
                                           f"(largest error {err:.3g} s)")
        self.in_delay = steps.astype(np.int32).reshape(-1)

    def _affine(self, name, node, where, nxt):
        self._linear(name, node, where, nxt, bias=_finite(_arr(node.bias), "bias", where))

    def _conv2d(self, name, node, where, nxt):
        w = _finite(_arr(node.weight), "weight", where)
        if w.ndim != 4:
            raise UnsupportedError(f"{where}: weight of shape {w.shape} is not (O, I, kH, kW)")
        if _pair(node.dilation, "dilation", where) != (1, 1):
            raise UnsupportedError(f"{where}: dilation ({node.dilation}) is not supported")
        stride = _pair(node.stride, "stride", where)
        pad = node.padding
        if isinstance(pad, (str, bytes)):
            pad = pad.decode() if isinstance(pad, bytes) else pad
            if pad == "valid":
                pad = (0, 0)
            elif stride == (1, 1) and all(k % 2 for k in w.shape[2:]):
                pad = ((w.shape[2] - 1) // 2, (w.shape[3] - 1) // 2)
            else:
                raise UnsupportedError(f"{where}: padding 'same' needs stride 1 and odd "
                                       "kernels")
        pad = _pair(pad, "padding", where)
        groups = int(np.asarray(node.groups))
        self._check_free(where)
        if self.in_scale is not None:
            w = w * self._channel_scale(where, groups).reshape(1, -1, 1, 1)
        conv = Conv2d(name, weight=w.astype(np.float32), stride=stride, padding=pad,
                      groups=groups)
        self.shape = conv.out_shape([self.shape])  # raises GraphError on a mismatch
        self.nodes.append(conv)
        self._conv_bias(node, w.shape[0], where)

    def _conv1d(self, name, node, where, nxt):
        """NIR Conv1d (weight (O, I/groups, K), (C, L) input); dilation is kept on the
        float node and compiled as the equal sparse kernel (exact)."""
        w = _finite(_arr(node.weight), "weight", where)
        if w.ndim != 3:
            raise UnsupportedError(f"{where}: weight of shape {w.shape} is not (O, I, K)")
        stride = _single(node.stride, "stride", where)
        dilation = _single(node.dilation, "dilation", where)
        pad = node.padding
        if isinstance(pad, (str, bytes)):
            pad = pad.decode() if isinstance(pad, bytes) else pad
            span = dilation * (w.shape[2] - 1)
            if pad == "valid":
                pad = 0
            elif stride == 1 and span % 2 == 0:
                pad = span // 2
            else:
                raise UnsupportedError(f"{where}: padding 'same' needs stride 1 and an odd "
                                       "(dilated) kernel")
        pad = _single(pad, "padding", where)
        groups = int(np.asarray(node.groups))
        self._check_free(where)
        if self.in_scale is not None:
            w = w * self._channel_scale(where, groups).reshape(1, -1, 1)
        span = dilation * (w.shape[2] - 1) + 1
        if w.shape[0] * w.shape[1] * span > MAX_DENSE_KERNEL:
            raise UnsupportedError(f"{where}: dilation {dilation} makes a dense kernel of "
                                   f"{w.shape[0]}x{w.shape[1]}x{span} weights (more than "
                                   f"{MAX_DENSE_KERNEL}), which is how it would compile")
        conv = Conv1d(name, weight=w.astype(np.float32), stride=stride, padding=pad,
                      dilation=dilation, groups=groups)
        self.shape = conv.out_shape([self.shape])  # raises GraphError on a mismatch
        self.nodes.append(conv)
        self._conv_bias(node, w.shape[0], where)

    def _channel_scale(self, where, groups) -> np.ndarray:
        """The pending per-element Scale as one factor per input channel of a conv."""
        s = self.in_scale.reshape(self.shape[0], -1)
        if groups != 1 or not np.allclose(s, s[:, :1], rtol=_REL_TOL):
            raise UnsupportedError(f"{where}: a Scale before a convolution must be per "
                                   "channel (and groups 1)")
        self.in_scale = None
        return s[:, 0]

    def _conv_bias(self, node, channels: int, where):
        """A conv's bias (one value per output channel) as the walk's bias."""
        b = (_finite(_arr(node.bias), "bias", where) if getattr(node, "bias", None) is not None
             else None)
        if b is not None and b.size not in (1, channels):
            raise UnsupportedError(f"{where}: bias of shape {b.shape} is not per channel")
        if b is not None:
            b = np.broadcast_to(b.reshape((-1,) + (1,) * (len(self.shape) - 1)), self.shape)
        self._set_bias(b, where)

    def _check_free(self, where):
        if self.bias is not None:
            raise UnsupportedError(f"{where}: a synapse bias reaches another synapse without "
                                   "a neuron in between (a bias axon feeds neurons only; "
                                   "fold the two synapses into one)")

    def _set_bias(self, b, where):
        if b is None or not np.any(b):
            return
        self.bias = np.broadcast_to(b, self.shape).astype(np.float64)

    def _scale(self, name, node, where, nxt):
        s = np.broadcast_to(_finite(_arr(node.scale), "scale", where),
                            self.shape).astype(np.float64)
        last = self._last()
        if self.bias is not None:
            self.bias = self.bias * s
        if isinstance(last, Dense):
            last.weight = (last.weight * s.reshape(-1, 1)).astype(np.float32)
        elif isinstance(last, (Conv2d, Conv1d)):
            per = s.reshape(s.shape[0], -1)
            if not np.allclose(per, per[:, :1], rtol=_REL_TOL):
                raise UnsupportedError(f"{where}: a Scale after a convolution must be per "
                                       "channel to fold into its weights")
            per = per[:, 0].reshape((-1,) + (1,) * (last.weight.ndim - 1))
            last.weight = (last.weight * per).astype(np.float32)
        else:  # after a neuron or the input: scale the next synapse's inputs
            self.in_scale = s if self.in_scale is None else self.in_scale * s
        self.meta["nir_quirks"].append(f"Scale '{name}' folded into synapse weights")

    # ---- neurons
    def _params(self, node, keys, where):
        out = {}
        for key in keys:
            v = getattr(node, key, None)
            if v is None:
                continue
            a = _arr(v)
            bad = np.isnan(a) if key.startswith("tau") else ~np.isfinite(a)
            if np.any(bad):
                raise UnsupportedError(f"{where}: {key} holds {int(bad.sum())} NaN or "
                                       f"infinite value(s) (of {a.size}); it must be finite")
            try:
                out[key] = np.broadcast_to(a, self.shape)
            except ValueError:
                raise UnsupportedError(f"{where}: {key} of shape {a.shape} does not match "
                                       f"the layer shape {self.shape}") from None
        return out

    def _tau(self, tau: np.ndarray, key: str, where: str, per_neuron: bool = False):
        """Decay fraction per step for a per-layer time constant: dt/tau (forward Euler),
        or 1 - exp(-dt/tau) for the conventions that decay exactly (sinabs, rockpool).
        per_neuron: time constants that differ between neurons (PLIF, snnTorch's per-neuron
        beta) give an array of the layer's shape, each element computed alike."""
        if per_neuron and not _uniform_tau(tau):
            values = np.asarray(tau, dtype=np.float64)
            uniq, inverse = np.unique(values, return_inverse=True)
            fractions = np.array([self._tau_one(float(t), key, where) for t in uniq])
            return fractions[inverse].reshape(values.shape)
        return self._tau_one(_one(tau, key, where), key, where)

    def _tau_one(self, t: float, key: str, where: str) -> float:
        if self.norse:
            t = t / self.dt
        if not t > 0:
            raise UnsupportedError(f"{where}: {key} ({t}) must be > 0")
        if self.exact:
            return 0.0 if math.isinf(t) else float(f"{-math.expm1(-self.dt / t):.7g}")
        # exporters store float32 (7 significant digits); the rest is noise of dt/(dt/d)
        d = 0.0 if math.isinf(t) else float(f"{self.dt / t:.7g}")
        if d > 1.0:
            raise UnsupportedError(
                f"{where}: {key} ({t:.6g} s) is shorter than dt ({self.dt:g} s): decay "
                f"fraction {d:.4g} > 1 under forward Euler; pass the exporter's dt (--dt), "
                "or --nir-convention if another exporter's convention applies (norse "
                "writes tau*dt, sinabs tau in steps)")
        return d

    def _neuron(self, name, where, du, dv, gain, p, pending_exact: bool):
        """Add LIF(du, dv) for a neuron whose voltage gets `gain` * input per step."""
        vreset = p.get("v_reset")
        if vreset is not None and np.any(vreset != 0):
            raise UnsupportedError(f"{where}: v_reset ({_show(vreset)}) is not 0; Loihi resets "
                                   "v to 0")
        if np.any(gain <= 0) or not np.all(np.isfinite(gain)):
            raise UnsupportedError(f"{where}: input gain ({_show(gain)}) must be finite and > "
                                   "0 (check r, w_in)")
        vth = p["v_threshold"] / gain
        if np.any(p["v_threshold"] <= 0):
            raise UnsupportedError(f"{where}: v_threshold ({_show(p['v_threshold'])}) must be "
                                   "> 0")
        bias = p["leak"] / gain
        if self.bias is not None:
            if pending_exact:      # no current state: exactly a voltage bias
                bias = bias + self.bias
                self.bias = None
            else:                  # into a decaying current: the synapse keeps it
                self._bias_into_synapse(where)
        ratio = vth / vth.flat[0]
        if np.allclose(ratio, 1.0, rtol=_REL_TOL):
            vth = float(vth.flat[0])
        elif self._fold_per_neuron(ratio):
            bias, vth = bias / ratio, float(vth.flat[0])
        else:       # a per-neuron threshold (programmable neurons: Loihi 2)
            vth = np.asarray(vth, dtype=np.float64)
        reset, fire_at = _SPIKING.get(self.conv, ("zero", ">"))
        du, dv = (d if isinstance(d, np.ndarray) else float(d) for d in (du, dv))
        self.nodes.append(LIF(name, shape=self.shape, du=du, dv=dv, vth=vth,
                              bias=bias.astype(np.float32), reset=reset, fire_at=fire_at))

    def _bias_into_synapse(self, where):
        """The pending synapse bias (a constant added to the neuron's input current) as the
        bias of the synapse feeding the neuron (the first one, when several add): per
        output of a Dense, per channel of a Conv2d or Conv1d."""
        feeds = self.feeds
        if not feeds or not all(isinstance(f, (Dense, Conv2d, Conv1d)) for f in feeds):
            raise UnsupportedError(
                f"{where}: the synapse bias ({_show(self.bias)}) reaches this neuron's "
                "decaying current through a pool or reshape; it compiles only from a "
                "Linear, Affine, Conv2d or Conv1d straight into the neuron")
        syn, b = feeds[0], self.bias
        if isinstance(syn, (Conv2d, Conv1d)):
            per = b.reshape(b.shape[0], -1)
            if not np.allclose(per, per[:, :1], rtol=_REL_TOL):
                raise UnsupportedError(f"{where}: the synapse bias ({_show(b)}) varies within "
                                       "a channel; a convolution's bias is per channel")
            b = per[:, 0]
        b = b.reshape(-1) + (0.0 if syn.bias is None else syn.bias)
        syn.bias = b.astype(np.float32)
        self.bias = None

    def _fold_per_neuron(self, ratio) -> bool:
        """Per-neuron thresholds/gains: divide rows of the feeding Dense so that one vth
        fits (exact, and every target takes it); False where no Dense feeds the layer."""
        if self.feeds and len(self.shape) == 1 and all(isinstance(f, Dense)
                                                      for f in self.feeds):
            for last in self.feeds + ([self.rec] if self.rec is not None else []):
                last.weight = (last.weight / ratio.reshape(-1, 1)).astype(np.float32)
                if last.bias is not None:
                    last.bias = (last.bias / ratio.reshape(-1)).astype(np.float32)
            return True
        return False

    def _report(self, name, kind, fractions: dict[str, float]):
        """Forward Euler decays by 1 - d per step where the ODE decays by exp(-d)."""
        row = {"layer": name, "nir_type": kind,
               "method": "exponential" if self.exact else "forward-euler"}
        for key, d in fractions.items():
            if isinstance(d, np.ndarray):   # per neuron: its range and the worst error
                row[key] = [float(d.min()), float(d.max())]
                errs = [self._errors(float(x)) for x in np.unique(d)]
                row[f"{key}_decay_abs_error"] = max(e[0] for e in errs)
                row[f"{key}_tau_rel_error"] = max((e[1] for e in errs), key=abs)
                continue
            row[key] = d
            if self.exact:  # the exporter's own model decays by exp(-dt/tau): exact
                row[f"{key}_decay_abs_error"] = row[f"{key}_tau_rel_error"] = 0.0
                continue
            row[f"{key}_decay_abs_error"] = abs((1.0 - d) - math.exp(-d))
            # 1 - d = exp(-dt / tau_eff): relative error of the effective time constant
            row[f"{key}_tau_rel_error"] = (0.0 if d == 0 else -1.0 if d >= 1 else
                                           d / -math.log1p(-d) - 1.0)
        self.meta["nir_approximation"].append(row)

    def _errors(self, d: float) -> tuple[float, float]:
        """(decay error, effective tau error) of one decay fraction (see `_report`)."""
        if self.exact:
            return 0.0, 0.0
        return (abs((1.0 - d) - math.exp(-d)),
                0.0 if d == 0 else -1.0 if d >= 1 else d / -math.log1p(-d) - 1.0)

    def _cubalif(self, name, node, where, nxt):
        p = self._params(node, ("tau_syn", "tau_mem", "r", "v_leak", "v_threshold",
                                "v_reset", "w_in"), where)
        du = self._tau(p["tau_syn"], "tau_syn", where, per_neuron=True)
        dv = self._tau(p["tau_mem"], "tau_mem", where, per_neuron=True)
        w_in = p.get("w_in", np.ones(self.shape))
        if self.conv == "rockpool":
            # LIFTorch: isyn += x; isyn *= beta; v = alpha v + isyn. With u = isyn / beta
            # that is u = (1 - du) u + x, v = (1 - dv) v + beta u: voltage gain beta = 1 - du
            a, g = np.ones(self.shape), np.full(self.shape, 1.0 - du)
        else:
            a = w_in if self.norse else du * w_in  # norse adds the input current unscaled
            g = dv * p["r"]
        p["leak"] = dv * p["v_leak"]  # added to v each step; bias = leak / (a g)
        # a constant current b: with du = 1, u = x + b exactly, so b is an LIF bias
        self._neuron(name, where, du, dv, a * g, p, pending_exact=bool(np.all(du == 1.0)))
        self._report(name, "CubaLIF", {"du": du, "dv": dv})

    def _lif(self, name, node, where, nxt):
        p = self._params(node, ("tau", "r", "v_leak", "v_threshold", "v_reset"), where)
        dv = self._tau(p["tau"], "tau", where, per_neuron=True)
        if np.any(dv == 0.0) and np.all(np.isfinite(p["r"])):
            raise UnsupportedError(
                f"{where}: tau is infinite, so the input gain dt/tau * r is 0 and the neuron "
                "never integrates; write a non-leaky neuron as nir.IF (or a finite tau)")
        # rockpool's LIFNeuronTorch adds its input with gain 1 (it writes r = alpha tau/dt)
        g = np.ones(self.shape) if self.conv == "rockpool" else dv * p["r"]
        p["leak"] = dv * p["v_leak"]
        self._neuron(name, where, 1.0, dv, g, p, pending_exact=True)
        self._report(name, "LIF", {"dv": dv})

    def _if(self, name, node, where, nxt):
        p = self._params(node, ("r", "v_threshold", "v_reset"), where)
        # norse's IAFCell and sinabs' IAF add r x per step; NIR's dv/dt = r I gives dt r x
        per_step = self.norse or self.conv == "sinabs"
        g = p["r"] if per_step else self.dt * p["r"]
        p["leak"] = np.zeros(self.shape)
        self._neuron(name, where, 1.0, 0.0, g, p, pending_exact=True)
        self._report(name, "IF", {})

    # ---- the non-spiking readout (only before Output: `_chain` checks)
    def _li(self, name, node, where, nxt):
        p = self._params(node, ("tau", "r", "v_leak"), where)
        self._readout(name, "LI", where, None, p.get("tau"), p)

    def _cubali(self, name, node, where, nxt):
        p = self._params(node, ("tau_syn", "tau_mem", "r", "v_leak", "w_in"), where)
        if p.get("tau_syn") is None:
            raise UnsupportedError(f"{where}: tau_syn is missing")
        self._readout(name, "CubaLI", where, p["tau_syn"], p.get("tau_mem"), p)

    def _readout_gain(self, du: float, dv: float, tau_mem: float, p: dict) -> np.ndarray:
        """Per-neuron gain from the readout's input x to its voltage, per convention:
        sinabs r (ExpLeak adds x unscaled), rockpool r dt / tau (= exp(-dt/tau)), norse
        dv r w_in (input added to the current unscaled), NIR dv r du w_in (forward Euler,
        input entering I with du w_in)."""
        r, w_in = p.get("r", np.ones(self.shape)), p.get("w_in", np.ones(self.shape))
        if self.conv == "sinabs":
            return np.asarray(r, dtype=np.float64)
        if self.conv == "rockpool":
            return r * self.dt / tau_mem
        if self.norse:
            return dv * r * w_in
        return dv * r * du * w_in

    def _readout(self, name, kind, where, tau_syn, tau_mem, p):
        """Add LI(du, dv, bias, offset, decision) for an LI/CubaLI node: the voltage of
        u = (1 - du) u + x, v = (1 - dv) v + gain u + leak (leak = dv v_leak), from v = v0
        (norse: v_leak, else 0); gain folded into the feeding synapse, the state run as
        v - v0 (bias leak - dv v0, offset v0)."""
        key = "tau_mem" if kind == "CubaLI" else "tau"
        if self.conv not in _ASSUME_LI:
            raise UnsupportedError(
                f"{where}: a non-spiking {kind} readout in a file of the {self.conv} "
                "convention, whose exporter writes none; pass --nir-convention nir (the NIR "
                "equations) or the convention of the exporter that wrote it")
        if tau_mem is None:
            raise UnsupportedError(f"{where}: {key} is missing")
        dv = self._tau(tau_mem, key, where)
        du = 1.0 if tau_syn is None else self._tau(tau_syn, "tau_syn", where)
        t_mem = _one(tau_mem, key, where)
        gain = np.broadcast_to(self._readout_gain(du, dv, t_mem, p), self.shape)
        if not np.all(np.isfinite(gain)) or np.any(gain == 0):
            raise UnsupportedError(f"{where}: input gain ({_show(gain)}) must be finite and "
                                   "not 0 (check tau, r, w_in)")
        v_leak = p.get("v_leak", np.zeros(self.shape))
        v0 = v_leak if self.norse else np.zeros(self.shape)
        bias = dv * v_leak - dv * v0
        if self.bias is not None:
            if du != 1.0:      # into a decaying current: the synapse keeps it (scaled
                self._bias_into_synapse(where)      # by the gain with its weights below)
            else:
                bias = bias + gain * self.bias
                self.bias = None
        self._fold_gain(where, kind, gain)
        rule, why = self._decision()
        self.nodes.append(LI(name, shape=self.shape, du=float(du), dv=float(dv),
                             bias=bias.astype(np.float32), offset=v0.astype(np.float32),
                             decision=rule))
        info = self.meta["nir"]
        info["assumptions"].append(_ASSUME_LI[self.conv].format(kind=kind))
        if kind == "CubaLI" and self.norse:
            info["assumptions"].append(_ASSUME_CUBALI_NORSE)
        word = {"last": "value at the last step", "sum": "sum over the steps",
                "max": "maximum over the steps"}[rule]
        info["assumptions"].append(f"readout decision: argmax over classes of the voltage's "
                                   f"{word} ({why})")
        info["readout"] = {"node": name, "nir_type": kind, "decision": rule,
                           "decision_source": why}
        self._report(name, kind, {"du": du, "dv": dv} if kind == "CubaLI" else {"dv": dv})

    def _decision(self) -> tuple[str, str]:
        """(rule, where it came from): the caller's, the library's, else "sum"."""
        if self.decision is not None:
            return self.decision, "given by the caller"
        return DEFAULT_DECISION.get(self.conv, (
            "sum", f"the {self.conv} convention defines no readout decision: snncompile's "
                   "default"))

    def _fold_gain(self, where, kind, gain):
        """Multiply the feeding synapse's output rows (channels) by `gain`, one value per
        output channel (Loihi adds the current to the voltage with gain 1)."""
        if not self.feeds or not all(f.is_synapse for f in self.feeds):
            last = self._last()
            raise UnsupportedError(
                f"{where}: a {kind} readout must directly follow a Linear, Affine or Conv2d "
                f"(its input gain is folded into those weights), not "
                f"{type(last).__name__ if last is not None else 'nothing'}")
        per = gain.reshape(gain.shape[0], -1)
        if not np.allclose(per, per[:, :1], rtol=_REL_TOL):
            raise UnsupportedError(f"{where}: the input gain ({_show(gain)}) differs within "
                                   "a channel; it must be one value per output channel to "
                                   "fold into the synapse weights")
        for last in self.feeds:
            shape = (-1,) + (1,) * (last.weight.ndim - 1)
            last.weight = (last.weight * per[:, 0].reshape(shape)).astype(np.float32)
            if last.bias is not None:
                last.bias = (last.bias * per[:, 0]).astype(np.float32)

    def _threshold(self, name, node, where, nxt):
        p = self._params(node, ("threshold",), where)
        p = {"v_threshold": p["threshold"], "leak": np.zeros(self.shape)}
        self._neuron(name, where, 1.0, 1.0, np.ones(self.shape), p, pending_exact=True)
        self._report(name, "Threshold", {})


def _expected_rank(nxt) -> int | None:
    """Per-sample rank the node after Input expects (to spot a batch dimension)."""
    if nxt is None:
        return None
    kind = _type(nxt)
    if kind in ("Linear", "Affine"):
        return 1
    if kind in ("Conv2d", "SumPool2d", "AvgPool2d"):
        return 3
    if kind == "Conv1d":
        return 2
    if kind == "Flatten":
        return 3
    for key in ("scale", "threshold", "v_threshold"):
        if hasattr(nxt, key) and np.ndim(_arr(getattr(nxt, key))) > 0:
            return np.ndim(_arr(getattr(nxt, key)))
    return None


def _one(a: np.ndarray, key: str, where: str) -> float:
    flat = np.asarray(a, dtype=np.float64).ravel()
    first = float(flat[0])
    if math.isinf(first) and np.all(flat == first):
        return first
    if not np.allclose(flat, first, rtol=_REL_TOL, atol=0):
        raise UnsupportedError(f"{where}: {key} differs between neurons ({_show(flat)}); "
                               "one value per layer is needed here (readouts; the time "
                               "step solved from rockpool's r)")
    return first


def _uniform_tau(a: np.ndarray) -> bool:
    """One time constant for the layer (within _REL_TOL; all infinite counts as one)."""
    flat = np.asarray(a, dtype=np.float64).ravel()
    if np.all(flat == flat[0]):
        return True
    return bool(np.all(np.isfinite(flat))) and bool(np.allclose(flat, flat[0], rtol=_REL_TOL,
                                                                 atol=0))


def _finite(a: np.ndarray, what: str, where: str) -> np.ndarray:
    bad = ~np.isfinite(a)
    if np.any(bad):
        raise UnsupportedError(f"{where}: {what} holds {int(bad.sum())} NaN or infinite "
                               f"value(s) (of {a.size}); it must be finite")
    return a


def _uniform(a: np.ndarray) -> bool:
    return bool(np.allclose(a, a.flat[0], rtol=_REL_TOL))


def _show(a) -> str:
    a = np.asarray(a, dtype=np.float64).ravel()
    if a.size and np.all(a == a[0]):
        return f"{a[0]:.6g}"
    return f"min {a.min():.6g}, max {a.max():.6g}"


def _np_pool(x: np.ndarray, k: tuple[int, int], average: bool) -> np.ndarray:
    c, h, w = x.shape
    y = x.reshape(c, h // k[0], k[0], w // k[1], k[1]).sum(axis=(2, 4))
    return y / (k[0] * k[1]) if average else y
