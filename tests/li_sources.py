"""NIR files ending in a non-spiking leaky-integrator readout (NIR `LI` / `CubaLI`), written
by the libraries users have, with each library's OWN simulation of the readout voltage.

Fixtures for the LI/CubaLI readout node type (issue 11). Every builder makes the same small
network in its library,

    Input(16) -> Linear(16, 12) -> spiking layer(12) -> Linear(12, 4) -> leaky readout(4)

with seeded weights (scaled so that the hidden layer fires on 5-50% of its steps, as a
trained layer does), runs the library's own simulation on seeded Bernoulli spike inputs,
exports the network with the library's own NIR exporter (its bugs worked around the way a
user would, each listed in `LISource.quirks`), and returns an `LISource`:

    src = sinabs_expleak()
    src.graph            # nir.NIRGraph (node types filled in, ready for nir.write)
    src.write(tmp_path)  # -> Path of the written .nir file
    src.inputs           # (N, T, 16) float32 spikes
    src.voltage          # (N, T, 4) float64: the library's readout voltage at every step
    src.decision         # (N,) the class the library's typical use picks (src.rule)

Builders (`SOURCES`): sinabs `ExpLeak` (NIR LI), norse `LIBoxCell` (LI), norse `LICell`
(CubaLI: norse 1.1.0's to_nir cannot export it, so the node is written by hand in norse's
own export convention), rockpool `ExpSynTorch` (LI; its hidden LIFTorch resets by
subtraction at v >= threshold, which the rockpool convention reads as LIF reset
'subtract', fire_at '>=') and rockpool `ExpSynTorch` straight on the input
spikes (`-direct`: Input -> Linear -> LI). snnTorch and spikingjelly have no non-spiking
readout that their NIR exporters write.

`nir_li_params(node, convention, dt)` reads an LI/CubaLI node the way each exporter meant
it, as the per-step recurrence `li_update` runs (Loihi's order: current first, then the
voltage with the new current):

    u[t] = (1 - du) * u[t-1] + x[t]                  # x: the readout's input current
    v[t] = (1 - dv) * v[t-1] + gain * u[t] + leak    # u[-1] = 0, v[-1] = v0

`tests/test_li_sources.py` checks that this reproduces every library's own voltage to
1e-5; li_notes.md (beside the task prompts) derives the formulas.
"""
from __future__ import annotations

import dataclasses
import math
import warnings
from pathlib import Path
from typing import Callable

import numpy as np

N_IN, HIDDEN, CLASSES = 16, 12, 4
SAMPLES, STEPS = 6, 16
P_SPIKE = 0.3          # Bernoulli input spike probability per input and step
NORSE_DT = 1e-3        # norse's default dt (LIFCell, LICell, to_nir)
ROCKPOOL_DT = 1e-3

RULES = ("last", "sum", "max")
"""Readout decisions: argmax over classes of the last step's voltage, of the voltage summed
over the steps, or of its maximum over the steps."""


@dataclasses.dataclass
class LISource:
    """One library's network, its own run, and its NIR export."""

    name: str               # the builder's id in SOURCES, e.g. "sinabs-ExpLeak"
    library: str            # "sinabs", "norse", "rockpool"
    module: str             # the library's readout module, e.g. "ExpLeak"
    readout: str            # NIR node type the exporter writes: "LI" or "CubaLI"
    readout_key: str        # the readout's node name in `graph`
    convention: str         # the exporter convention snncompile's NIR reader detects
    dt: float               # the library's step (seconds; sinabs: 1.0 = one step)
    graph: object           # nir.NIRGraph, node types filled in
    inputs: np.ndarray      # (N, T, 16) float32 0/1 spikes
    hidden: np.ndarray      # (N, T, 12) float64: the library's hidden-layer spikes
    current: np.ndarray     # (N, T, 4) float64: the readout's input (Linear output), library
    voltage: np.ndarray     # (N, T, 4) float64: the library's readout voltage per step
    rule: str               # one of RULES: how the library's typical use decides
    decision: np.ndarray    # (N,) int64: argmax under `rule` of `voltage`
    quirks: list            # exporter bugs worked around here, one line each
    hidden_exact: bool      # snncompile's float graph of the file spikes exactly as the
    #                         library's hidden layer
    model: object = None    # the library's model (for further runs)

    def write(self, directory) -> Path:
        """Write `graph` to DIRECTORY/<name>.nir; returns the path."""
        from test_nir_exporters import _write
        path = Path(directory) / f"{self.name}.nir"
        _write(self.graph, path)
        return path


def decide(voltage: np.ndarray, rule: str) -> np.ndarray:
    """(N,) class per sample from (N, T, C) voltages under `rule` (one of RULES)."""
    v = np.asarray(voltage, dtype=np.float64)
    if rule == "last":
        return v[:, -1].argmax(1)
    if rule == "sum":
        return v.sum(1).argmax(1)
    if rule == "max":
        return v.max(1).argmax(1)
    raise ValueError(f"decision rule '{rule}' is not one of {', '.join(RULES)}")


# ------------------------------------------------------------------ the update and its reading
def li_update(current: np.ndarray, du: float, dv: float, gain, leak=0.0, v0=0.0
              ) -> np.ndarray:
    """(N, T, C) voltages of the recurrence in the module docstring, float64, from u = 0
    and v = v0 (norse starts its voltage at v_leak; the others at 0). `current`: (N, T, C)
    input current x; gain, leak and v0 scalars or (C,)."""
    x = np.asarray(current, dtype=np.float64)
    u = np.zeros(x.shape[:1] + x.shape[2:])
    v = np.zeros_like(u) + v0
    out = np.empty_like(x)
    for t in range(x.shape[1]):
        u = (1.0 - du) * u + x[:, t]
        v = (1.0 - dv) * v + gain * u + leak
        out[:, t] = v
    return out


def param(node, key, default=None) -> np.ndarray:
    """A NIR node's parameter `key` as a float64 array (torch tensors detached); `default`
    when the node does not hold it."""
    v = getattr(node, key, None)
    if v is None:
        return np.asarray(default, dtype=np.float64)
    if hasattr(v, "detach"):
        v = v.detach().cpu().numpy()
    return np.asarray(v, dtype=np.float64)


def _scalar(a: np.ndarray, key: str) -> float:
    flat = np.asarray(a, dtype=np.float64).ravel()
    if not np.allclose(flat, flat[0], rtol=1e-6, atol=0):
        raise ValueError(f"{key} differs between neurons: one decay per layer on Loihi")
    return float(flat[0])


def rockpool_dt(tau: float, r: float) -> float:
    """dt from rockpool's r = tau / dt * exp(-dt / tau) (x = dt / tau solves x + ln x =
    -ln r; Newton, as snncompile's reader does for LIFTorch)."""
    x = 1.0 / r
    for _ in range(60):
        x = max(x - (x + math.log(x) + math.log(r)) / (1.0 + 1.0 / x), x / 10)
    return x * tau


def nir_li_params(node, convention: str, dt: float) -> dict:
    """{du, dv, gain, leak, v0} of `li_update` for a NIR LI or CubaLI node as exporter
    `convention` wrote it (dt: seconds; sinabs: 1.0, its time constants are in steps).

    nir       forward Euler of the NIR ODEs: du = dt/tau_syn (LI: 1), dv = dt/tau,
              gain = dv * r * du * w_in (input enters I with du * w_in), leak = dv * v_leak
    sinabs    ExpLeak: v = exp(-1/tau) v + x (norm_input=False, ExpLeak's default and what
              sinabs' own from_nir assumes; to_nir writes r = 1 either way)
    norse     tau written as tau * dt (norse#411): tau / dt is the real one; forward Euler,
              the input added to the current unscaled: gain = dv * r (w_in = 1); the
              voltage starts at v_leak (norse's initial_state), v0 = v_leak
    rockpool  ExpSynTorch: isyn = (isyn + x) * beta, beta = exp(-dt/tau), written as
              r = tau/dt * beta: gain = r * dt / tau = beta, dv = 1 - beta
    """
    kind = type(node).__name__
    if kind == "LI":
        tau_mem, tau_syn = param(node, "tau"), None
    elif kind == "CubaLI":
        tau_mem, tau_syn = param(node, "tau_mem"), param(node, "tau_syn")
    else:
        raise ValueError(f"{kind} is not a leaky-integrator readout (LI, CubaLI)")
    r = param(node, "r", 1.0)
    v_leak = param(node, "v_leak", 0.0)
    w_in = param(node, "w_in", 1.0)
    t_mem = _scalar(tau_mem, "tau_mem")
    t_syn = None if tau_syn is None else _scalar(tau_syn, "tau_syn")
    if convention == "norse":
        t_mem = t_mem / dt
        t_syn = None if t_syn is None else t_syn / dt
    if convention in ("sinabs", "rockpool"):   # these libraries decay exactly
        dv = -math.expm1(-dt / t_mem)
        du = 1.0 if t_syn is None else -math.expm1(-dt / t_syn)
    else:
        dv = dt / t_mem
        du = 1.0 if t_syn is None else dt / t_syn
    if convention == "sinabs":
        gain = r
    elif convention == "rockpool":
        gain = r * dt / t_mem
    elif convention == "norse":
        gain = dv * r * w_in
    elif convention == "nir":
        gain = dv * r * du * w_in
    else:
        raise ValueError(f"convention '{convention}' has no LI reading here")
    v0 = v_leak if convention == "norse" else np.zeros_like(v_leak)
    return {"du": du, "dv": dv, "gain": np.asarray(gain, dtype=np.float64),
            "leak": dv * v_leak, "v0": v0}


def loihi_form(p: dict) -> dict:
    """`nir_li_params` as Loihi runs it, from zero state (LIFReset zeroes u and v at each
    sample): w = v - v0 follows the same recurrence with bias = leak - dv * v0 and w = 0 at
    the start, so v = w + offset with offset = v0 added to the read value (norse: bias 0,
    offset v_leak)."""
    return {"du": p["du"], "dv": p["dv"], "gain": p["gain"],
            "bias": p["leak"] - p["dv"] * p["v0"], "offset": p["v0"]}


def readout_current(src: LISource) -> np.ndarray:
    """(N, T, 4) input of the readout computed from the NIR file's own synapse (Affine or
    Linear in front of the readout) and the library's hidden spikes."""
    pred = {dst: s for s, dst in src.graph.edges}
    syn = src.graph.nodes[pred[src.readout_key]]
    w = param(syn, "weight")
    b = param(syn, "bias", 0.0) if type(syn).__name__ == "Affine" else 0.0
    return src.hidden @ w.T + b


# ------------------------------------------------------------------ shared pieces
def _weights(seed: int, gain1: float, gain2: float):
    """Seeded (W1 (12, 16), W2 (4, 12), b2 (4,)) float32; gain1 sets the hidden firing."""
    rng = np.random.default_rng(seed)
    w1 = rng.normal(0.0, gain1 / math.sqrt(N_IN), (HIDDEN, N_IN)).astype(np.float32)
    w2 = rng.normal(0.0, gain2 / math.sqrt(HIDDEN), (CLASSES, HIDDEN)).astype(np.float32)
    b2 = rng.normal(0.0, 0.1, CLASSES).astype(np.float32)
    return w1, w2, b2


def _spikes(seed: int, samples: int, steps: int) -> np.ndarray:
    rng = np.random.default_rng(seed + 1000)
    return (rng.random((samples, steps, N_IN)) < P_SPIKE).astype(np.float32)


def _set_linear(lin, w, b=None):
    import torch
    with torch.no_grad():
        lin.weight.copy_(torch.as_tensor(w))
        if b is not None:
            lin.bias.copy_(torch.as_tensor(b))


def _hooked(modules, run: Callable):
    """Run `run()` recording each module's outputs per call: {module: [outputs]}."""
    rec = {id(m): [] for m in modules}
    hooks = [m.register_forward_hook(
        lambda mod, _i, out: rec[id(mod)].append(out[0] if isinstance(out, tuple) else out))
        for m in modules]
    try:
        run()
    finally:
        for h in hooks:
            h.remove()
    return [rec[id(m)] for m in modules]


def _np(t) -> np.ndarray:
    return t.detach().cpu().numpy().astype(np.float64)


def _make(name, library, module, readout, key, convention, dt, graph, x, hidden, current,
          voltage, rule, quirks, model, hidden_exact=True) -> LISource:
    return LISource(name=name, library=library, module=module, readout=readout,
                    readout_key=key, convention=convention, dt=dt, graph=graph, inputs=x,
                    hidden=hidden, current=current, voltage=voltage, rule=rule,
                    decision=decide(voltage, rule), quirks=quirks, hidden_exact=hidden_exact,
                    model=model)


def _key_of(graph, kind: str) -> str:
    keys = [k for k, n in graph.nodes.items() if type(n).__name__ == kind]
    if len(keys) != 1:
        raise AssertionError(f"expected one {kind} node, found {keys}")
    return keys[0]


# ------------------------------------------------------------------ sinabs
def sinabs_expleak(samples: int = SAMPLES, steps: int = STEPS, seed: int = 0,
                   tau_mem: float = 6.0, readout_bias: bool = True) -> LISource:
    """sinabs 3.1.3: Linear -> IAF -> Linear (+ bias) -> ExpLeak(tau_mem steps).

    ExpLeak (norm_input=False): v = exp(-1/tau) v + x per step; to_nir writes
    LI(tau = tau_mem in steps, r = 1, v_leak = 0) and the Linear as Affine (its bias, or
    zeros). The IAF makes the file detectable as sinabs' (IF with per-neuron r = 1)."""
    import torch
    import sinabs
    import sinabs.activation as sa
    import sinabs.layers as sl
    from sinabs.nir import to_nir

    w1, w2, b2 = _weights(seed, gain1=2.5, gain2=1.0)
    act = dict(spike_fn=sa.SingleSpike, reset_fn=sa.MembraneSubtract(),
               surrogate_grad_fn=sa.PeriodicExponential())
    model = torch.nn.Sequential(torch.nn.Linear(N_IN, HIDDEN, bias=False), sl.IAF(**act),
                                torch.nn.Linear(HIDDEN, CLASSES, bias=readout_bias),
                                sl.ExpLeak(tau_mem=tau_mem))
    _set_linear(model[0], w1)
    _set_linear(model[2], w2, b2 if readout_bias else None)
    x = _spikes(seed, samples, steps)
    with torch.no_grad():
        sinabs.reset_states(model)
        hid, cur, volt = _hooked([model[1], model[2], model[3]],
                                 lambda: model(torch.as_tensor(x)))
    graph = to_nir(model, torch.zeros((1, steps, N_IN)))
    quirks = ["to_nir writes the sample's (batch, time) dimensions into the Input type "
              "(snncompile's reader strips them)",
              "to_nir writes 0-d LI parameters: nir.write needs compression=None"]
    return _make("sinabs-ExpLeak", "sinabs", "ExpLeak", "LI", _key_of(graph, "LI"), "sinabs",
                 1.0, graph, x, _np(hid[0]), _np(cur[0]), _np(volt[0]), "sum", quirks, model)


# ------------------------------------------------------------------ norse
def _norse_run(model, x, readout_cls, spiking_cls):
    import torch
    import norse.torch as norse  # noqa: F401

    mods = [m for m in model.modules() if isinstance(m, (spiking_cls, readout_cls))]
    lin = [m for m in model.modules() if isinstance(m, torch.nn.Linear)][-1]

    def run():
        state = None
        for t in range(x.shape[1]):
            _, state = model(torch.as_tensor(x[:, t]), state)
    with torch.no_grad():
        hid, volt, cur = _hooked([mods[0], mods[1], lin], run)
    stack = lambda v: _np(torch.stack(v, 1))  # noqa: E731
    return stack(hid), stack(cur), stack(volt)


def _norse_export(model, quirks):
    import torch
    import norse.torch as norse
    with warnings.catch_warnings():  # nirtorch 2.6 deprecates the tracer norse uses
        warnings.simplefilter("ignore", DeprecationWarning)
        graph = norse.to_nir(model, torch.zeros(1, N_IN), dt=NORSE_DT)
    quirks.append("to_nir writes tau as dt / tau_inv = tau * dt (norse#411)")
    quirks.append("to_nir writes 0-d parameters: nir.write needs compression=None")
    return graph


def norse_liboxcell(samples: int = SAMPLES, steps: int = STEPS, seed: int = 1,
                    tau_mem_inv: float = 1 / 8e-3, v_leak: float = 0.25) -> LISource:
    """norse 1.1.0: Linear -> LIFCell -> Linear -> LIBoxCell (dt = 1e-3).

    LIBoxCell: v = v + dt * tau_mem_inv * ((v_leak - v) + x); to_nir writes
    LI(tau = dt / tau_mem_inv, r = 1, v_leak). The LIFCell (CubaLIF r = 1, w_in = 1) makes
    the file detectable as norse's. v_leak (default 0.25, norse's is 0) exercises the leak,
    which is a constant voltage bias dv * v_leak per step."""
    import torch
    import norse.torch as norse
    from norse.torch.functional.leaky_integrator_box import LIBoxParameters

    w1, w2, _ = _weights(seed, gain1=14.0, gain2=4.0)
    p = LIBoxParameters(tau_mem_inv=torch.as_tensor(tau_mem_inv),
                        v_leak=torch.as_tensor(v_leak))
    model = norse.SequentialState(torch.nn.Linear(N_IN, HIDDEN, bias=False), norse.LIFCell(),
                                  torch.nn.Linear(HIDDEN, CLASSES, bias=False),
                                  norse.LIBoxCell(p))
    _set_linear(model[0], w1)
    _set_linear(model[2], w2)
    x = _spikes(seed, samples, steps)
    hid, cur, volt = _norse_run(model, x, norse.LIBoxCell, norse.LIFCell)
    quirks: list[str] = []
    graph = _norse_export(model, quirks)
    return _make("norse-LIBoxCell", "norse", "LIBoxCell", "LI", _key_of(graph, "LI"), "norse",
                 NORSE_DT, graph, x, hid, cur, volt, "max", quirks, model)


def norse_licell(samples: int = SAMPLES, steps: int = STEPS, seed: int = 2,
                 tau_syn_inv: float = 1 / 4e-3, tau_mem_inv: float = 1 / 1e-2,
                 v_leak: float = 0.1) -> LISource:
    """norse 1.1.0: Linear -> LIFCell -> Linear -> LICell (dt = 1e-3).

    LICell: i = i + x; v = v + dt tau_mem_inv ((v_leak - v) + i); i = i - dt tau_syn_inv i.
    norse 1.1.0's to_nir has no LICell branch: its node comes back None. A user writes it
    by hand as norse writes its LIFCell: CubaLI(tau_syn = dt / tau_syn_inv, tau_mem =
    dt / tau_mem_inv, r = 1, v_leak, w_in = 1), so that one convention reads the file."""
    import nir
    import torch
    import norse.torch as norse
    from norse.torch.functional.leaky_integrator import LIParameters

    w1, w2, _ = _weights(seed, gain1=14.0, gain2=4.0)
    p = LIParameters(tau_syn_inv=torch.as_tensor(tau_syn_inv),
                     tau_mem_inv=torch.as_tensor(tau_mem_inv), v_leak=torch.as_tensor(v_leak))
    model = norse.SequentialState(torch.nn.Linear(N_IN, HIDDEN, bias=False), norse.LIFCell(),
                                  torch.nn.Linear(HIDDEN, CLASSES, bias=False),
                                  norse.LICell(p))
    _set_linear(model[0], w1)
    _set_linear(model[2], w2)
    x = _spikes(seed, samples, steps)
    hid, cur, volt = _norse_run(model, x, norse.LICell, norse.LIFCell)
    quirks: list[str] = []
    graph = _norse_export(model, quirks)
    missing = [k for k, n in graph.nodes.items() if n is None]
    if len(missing) != 1:
        raise AssertionError(f"norse to_nir: expected the LICell alone untranslated, got "
                             f"{missing}")
    zero = np.zeros(())
    graph.nodes[missing[0]] = nir.CubaLI(
        tau_syn=zero + NORSE_DT / tau_syn_inv, tau_mem=zero + NORSE_DT / tau_mem_inv,
        r=zero + 1.0, v_leak=zero + v_leak, w_in=1.0)
    quirks.append("to_nir has no LICell branch (node None): CubaLI written by hand in "
                  "norse's own export convention (tau = dt / tau_inv, r = 1, w_in = 1)")
    return _make("norse-LICell", "norse", "LICell", "CubaLI", missing[0], "norse", NORSE_DT,
                 graph, x, hid,
                 cur, volt, "max", quirks, model)


# ------------------------------------------------------------------ rockpool
def rockpool_expsyn(samples: int = SAMPLES, steps: int = STEPS, seed: int = 3,
                    tau: float = 0.02, hidden: bool = True) -> LISource:
    """rockpool 3.1.0: LinearTorch -> LIFTorch -> LinearTorch -> ExpSynTorch (dt = 1e-3);
    hidden=False: LinearTorch -> ExpSynTorch on the input spikes (`hidden` then holds the
    inputs). LIFTorch resets by subtracting the threshold and spikes at v >= threshold:
    the rockpool convention reads it as LIF reset 'subtract', fire_at '>=' (exact).

    ExpSynTorch: isyn = (isyn + x) * exp(-dt/tau); to_nir writes LI(tau, r = tau/dt *
    exp(-dt/tau), v_leak = 0) and names nodes '<i>_ExpSynTorch' (the rockpool convention)."""
    import torch
    from rockpool.nn.combinators import Sequential
    from rockpool.nn.modules import ExpSynTorch, LIFTorch, LinearTorch
    from rockpool.nn.modules.torch.lif_torch import PeriodicExponential
    from rockpool.nn.modules.torch.nir import to_nir

    w1, w2, _ = _weights(seed, gain1=3.0, gain2=1.0)
    lif = dict(tau_mem=0.01, tau_syn=0.002, dt=ROCKPOOL_DT, max_spikes_per_dt=1,
               spike_generation_fn=PeriodicExponential)
    readout = ExpSynTorch(CLASSES, tau=torch.full((CLASSES,), tau), dt=ROCKPOOL_DT)
    x = _spikes(seed, samples, steps)
    if hidden:
        model = Sequential(LinearTorch((N_IN, HIDDEN), has_bias=False),
                           LIFTorch(HIDDEN, **lif),
                           LinearTorch((HIDDEN, CLASSES), has_bias=False), readout)
        with torch.no_grad():   # LinearTorch holds weight as (in, out)
            model[0].weight.copy_(torch.as_tensor(w1.T))
            model[2].weight.copy_(torch.as_tensor(w2.T))
    else:
        w_direct = _weights(seed, gain1=1.0, gain2=0.0)[0][:CLASSES]
        model = Sequential(LinearTorch((N_IN, CLASSES), has_bias=False), readout)
        with torch.no_grad():
            model[0].weight.copy_(torch.as_tensor(w_direct.T))
    model.reset_state()
    with torch.no_grad():
        out, _, rec = model(torch.as_tensor(x), record=True)
    if hidden:
        hid = _np(next(v for k, v in rec.items() if k.endswith("_LIFTorch_output")))
        cur = rec["2_LinearTorch_output"]
    else:
        hid, cur = x.astype(np.float64), rec["0_LinearTorch_output"]
    graph = to_nir(model)
    key = _key_of(graph, "LI")
    node = graph.nodes[key]
    # rockpool 3.1.0's to_nir writes ExpSynTorch.tau undetached (a Parameter that requires
    # grad, which nir.write cannot turn into an array): a user detaches it
    node.tau = node.tau.detach().cpu().numpy()
    quirks = ["to_nir writes ExpSynTorch.tau as a torch Parameter requiring grad: detached "
              "by hand for nir.write",
              "to_nir writes r = tau/dt * exp(-dt/tau) (not a resistance): dt is solved "
              "from it"]
    return _make("rockpool-ExpSynTorch" + ("" if hidden else "-direct"), "rockpool",
                 "ExpSynTorch", "LI", key, "rockpool", ROCKPOOL_DT, graph, x, hid, _np(cur),
                 _np(out), "sum", quirks, model)


def rockpool_expsyn_direct(**kw) -> LISource:
    """`rockpool_expsyn(hidden=False)`: LinearTorch -> ExpSynTorch on the input spikes."""
    return rockpool_expsyn(hidden=False, **kw)


SOURCES: dict[str, Callable[..., LISource]] = {
    "sinabs-ExpLeak": sinabs_expleak,
    "norse-LIBoxCell": norse_liboxcell,
    "norse-LICell": norse_licell,
    "rockpool-ExpSynTorch": rockpool_expsyn,
    "rockpool-ExpSynTorch-direct": rockpool_expsyn_direct,
}
"""Every builder by id (library-module)."""
