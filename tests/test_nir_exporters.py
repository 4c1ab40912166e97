"""NIR files written by the exporters users have (snnTorch 1.0.0, sinabs 3.1.3, spikingjelly
2.0.0, rockpool 3.1.0, norse 1.1.0), compiled from the command line.

For each library a small dense and a small conv network is trained in THAT library on
scikit-learn's digits (rate-coded spikes, T steps), exported with the library's own
exporter (its bugs worked around here the way a user would, each with a comment), written
to a .nir file and compiled with `snncompile compile model.nir --calib ...`. Asserted:

- the compiled network's accuracy (bit-accurate simulator) is within 2 percentage points of
  the source library's own accuracy on the same test inputs;
- per layer, the spike count of snncompile's float graph (sim/float_model.py) matches the
  library's own simulation within SPIKE_TOL;
- the report says which dt and exporter convention were used and where they came from.

Training is a few seconds per network (only the synapse weights are trained, so that every
layer keeps one time constant and one threshold, as Loihi's LIF has); everything is built
once per session.
"""
from __future__ import annotations

import json
import sys
import warnings
from contextlib import ExitStack
from unittest import mock

import numpy as np
import pytest

nir = pytest.importorskip("nir")
torch = pytest.importorskip("torch")
for _lib in ("snntorch", "sinabs", "spikingjelly", "rockpool", "norse"):  # requirements/
    pytest.importorskip(_lib)                                             # clients.txt
pytestmark = pytest.mark.filterwarnings(  # snnTorch, sinabs and rockpool call it
    "ignore:nirtorch.extract_nir_graph is being deprecated:DeprecationWarning")

from snncompile.cli import main  # noqa: E402

T = 8            # time steps per sample
HIDDEN = 32
N_TRAIN = 600    # training samples (of 1,437)
EPOCHS = 2
LR = 3e-2
GAIN = 2.0       # initial weights x GAIN, so that every layer fires from the start
SPIKE_TOL = 0.005
"""Relative difference allowed between a layer's total spike count in snncompile's float
graph and in the library's own simulation (every exporter here: rockpool's and sinabs'
reset by subtraction and the >= compare are LIF options): only float32 summation order can
flip a spike (measured: 0 differences in every
layer of the snnTorch, sinabs, spikingjelly and norse networks)."""
ACC_TOL = 0.02


@pytest.fixture(scope="session")
def digits_data():
    from examples.datasets.digits import digits
    xtr, ytr, xte, yte = digits(steps=T, image=True, spikes=True)
    return xtr[:N_TRAIN], ytr[:N_TRAIN], xte, yte


def _train(params, forward, x, y, lr=LR, epochs=EPOCHS, batch=50):
    """Adam on the spike counts of the output layer (cross-entropy), through the library's
    own surrogate gradient."""
    torch.manual_seed(0)
    opt = torch.optim.Adam(params, lr=lr)
    xt = torch.as_tensor(x, dtype=torch.float32)
    yt = torch.as_tensor(y)
    for _ in range(epochs):
        perm = torch.randperm(len(xt))
        for i in range(0, len(xt), batch):
            idx = perm[i:i + batch]
            out = forward(xt[idx])[-1]
            loss = torch.nn.functional.cross_entropy(out.sum(1), yt[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()


def _weights(model, bias=False):
    """Only the synapse weights train (not thresholds, time constants or neuron biases),
    and with `bias` the synapses' biases (norse: Linear and Conv2d biases, which norse's
    exporter writes as Affine/Conv2d bias into a CubaLIF's decaying current)."""
    ws = [p for n, p in model.named_parameters() if n.endswith("weight")]
    with torch.no_grad():
        for w in ws:
            w.mul_(GAIN)
    if bias:
        ws += [p for n, p in model.named_parameters() if n.endswith("bias")]
    return ws


def _hooked(model, kinds, run):
    """Run `run()` with forward hooks on the neuron modules (`kinds`); returns what run
    returns and the per-layer outputs, in module order."""
    mods = [m for m in model.modules() if isinstance(m, kinds)]
    rec = {id(m): [] for m in mods}
    hooks = [m.register_forward_hook(
        lambda mod, _i, out: rec[id(mod)].append(out[0] if isinstance(out, tuple) else out))
        for m in mods]
    try:
        result = run()
    finally:
        for h in hooks:
            h.remove()
    return result, [rec[id(m)] for m in mods]


# ------------------------------------------------------------------------ the libraries
class SnnTorch:
    name = "snntorch"

    def build(self, conv):
        import snntorch as snn
        torch.manual_seed(1)
        # reset_mechanism='zero': Loihi resets to 0; snnTorch's NIR export records no reset
        # mode (the compile report says that it assumed reset to zero)
        leaky = dict(beta=0.9, init_hidden=True, reset_mechanism="zero")
        if conv:
            return torch.nn.Sequential(
                torch.nn.Conv2d(1, 4, 3, padding=1), snn.Leaky(**leaky),
                torch.nn.AvgPool2d(2), torch.nn.Flatten(), torch.nn.Linear(64, 10),
                snn.Leaky(output=True, **leaky))
        return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, HIDDEN),
                                   snn.Leaky(**leaky), torch.nn.Linear(HIDDEN, 10),
                                   snn.Leaky(output=True, **leaky))

    def forward(self, model, x, grad=True):
        import snntorch as snn
        from snntorch import utils

        def run():
            utils.reset(model)
            return torch.stack([model(x[:, t])[0] for t in range(x.shape[1])], 1)
        with torch.set_grad_enabled(grad):
            _, layers = _hooked(model, snn.Leaky, run)
        return [torch.stack(v, 1) for v in layers]

    def export(self, model, conv):
        from snntorch.export_nir import export_to_nir
        sample = torch.zeros((1, 1, 8, 8))
        # snnTorch 1.0.0's export_to_nir ends with nir_graph.infer_types(), which fails on
        # its own graphs with nir 1.0.8 (dense: "type mismatch: input.output: [[1 64]] ->
        # 0.input: [[64]]", conv: IndexError); a user skips that last call
        with mock.patch.object(nir.NIRGraph, "infer_types", lambda self: None):
            g = export_to_nir(model, sample)
        return g


class Sinabs:
    name = "sinabs"

    def build(self, conv):
        import sinabs.activation as sa
        import sinabs.layers as sl
        torch.manual_seed(2)
        # one spike per step (sinabs' default MultiSpike emits several, which NIR cannot
        # say) and sinabs' default reset by subtraction, which the sinabs convention reads
        # as LIF reset 'subtract', fire_at '>=' (to_nir records neither)
        act = dict(spike_fn=sa.SingleSpike, reset_fn=sa.MembraneSubtract(),
                   surrogate_grad_fn=sa.PeriodicExponential())
        if conv == "1d":  # digit rows as channels: (8, 8) -> stride 2 -> (8, 4)
            return torch.nn.Sequential(
                torch.nn.Conv1d(8, 8, 3, stride=2, padding=1, bias=False),
                sl.IAFSqueeze(num_timesteps=T, **act), torch.nn.Flatten(),
                torch.nn.Linear(32, 10, bias=False), sl.IAFSqueeze(num_timesteps=T, **act))
        if conv:
            return torch.nn.Sequential(
                torch.nn.Conv2d(1, 4, 3, padding=1, bias=False),
                sl.IAFSqueeze(num_timesteps=T, **act), sl.SumPool2d(2), torch.nn.Flatten(),
                torch.nn.Linear(64, 10, bias=False), sl.IAFSqueeze(num_timesteps=T, **act))
        return torch.nn.Sequential(
            torch.nn.Flatten(start_dim=2), torch.nn.Linear(64, HIDDEN, bias=False),
            sl.IAF(**act), torch.nn.Linear(HIDDEN, 10, bias=False),
            sl.LIF(tau_mem=8.0, **act))

    def forward(self, model, x, grad=True):
        import sinabs
        import sinabs.layers as sl
        b = x.shape[0]
        conv = isinstance(model[0], (torch.nn.Conv2d, torch.nn.Conv1d))
        inp = x.reshape((b * T,) + tuple(x.shape[2:])) if conv else x
        with torch.set_grad_enabled(grad):
            sinabs.reset_states(model)
            _, layers = _hooked(model, (sl.IAF, sl.LIF), lambda: model(inp))
        if not conv:  # IAF/LIF take (batch, time, ...); the Squeeze layers (batch*time, ...)
            return [v[0] for v in layers]
        return [v[0].reshape((b, T) + tuple(v[0].shape[1:])) for v in layers]

    def export(self, model, conv):
        from sinabs.nir import to_nir
        sample = (torch.zeros((T, 8, 8)) if conv == "1d" else torch.zeros((T, 1, 8, 8))
                  if conv else torch.zeros((1, T, 1, 8, 8)))
        return to_nir(model, sample)


class SpikingJelly:
    name = "spikingjelly"

    def build(self, conv):
        from spikingjelly.activation_based import functional, layer, neuron
        torch.manual_seed(3)
        if conv == "1d":  # dilation 2, written by export_to_nir as the Conv1d's dilation
            net = torch.nn.Sequential(
                layer.Conv1d(8, 8, 3, padding=2, dilation=2, bias=False), neuron.IFNode(),
                layer.Flatten(), layer.Linear(64, 10, bias=False), neuron.LIFNode(tau=2.0))
        elif conv:
            net = torch.nn.Sequential(
                layer.Conv2d(1, 4, 3, padding=1, bias=False), neuron.IFNode(),
                layer.AvgPool2d(2), layer.Flatten(), layer.Linear(64, 10, bias=False),
                neuron.LIFNode(tau=2.0))
        else:
            net = torch.nn.Sequential(
                layer.Flatten(), layer.Linear(64, HIDDEN), neuron.LIFNode(tau=2.0),
                layer.Linear(HIDDEN, 10, bias=False), neuron.IFNode())
        functional.set_step_mode(net, "m")
        return net

    def forward(self, model, x, grad=True):
        from spikingjelly.activation_based import functional, neuron
        with torch.set_grad_enabled(grad):
            functional.reset_net(model)
            _, layers = _hooked(model, neuron.BaseNode, lambda: model(x.transpose(0, 1)))
        return [v[0].transpose(0, 1) for v in layers]

    def export(self, model, conv):
        from spikingjelly.activation_based import functional
        from spikingjelly.activation_based.nir_exchange import export_to_nir
        functional.reset_net(model)
        return export_to_nir(model, torch.zeros((T, 1, 8, 8) if conv == "1d"
                                                else (T, 1, 1, 8, 8)))


class Rockpool:
    name = "rockpool"
    flat = True      # LinearTorch takes (batch, time, 64): the NIR input is (64,)
    no_conv = ("rockpool 3.1.0's to_nir maps only LinearTorch, LIFTorch, LIFNeuronTorch and "
               "ExpSynTorch: it has no convolution to export")

    def build(self, conv):
        from rockpool.nn.combinators import Sequential
        from rockpool.nn.modules import LIFTorch, LinearTorch
        torch.manual_seed(4)
        # max_spikes_per_dt=1: Loihi emits one spike per step (rockpool's default is up to
        # 2**16 spikes per step, which NIR cannot say)
        from rockpool.nn.modules.torch.lif_torch import PeriodicExponential
        lif = dict(tau_mem=0.01, tau_syn=0.002, dt=1e-3, max_spikes_per_dt=1,
                   spike_generation_fn=PeriodicExponential)
        return Sequential(LinearTorch((64, HIDDEN)), LIFTorch(HIDDEN, **lif),
                          LinearTorch((HIDDEN, 10)), LIFTorch(10, **lif))

    def forward(self, model, x, grad=True):
        model.reset_state()
        with torch.set_grad_enabled(grad):
            out, _, rec = model(x.reshape(x.shape[0], T, -1), record=True)
        # the recorded hidden spikes, and the output itself (the record is not differentiable)
        return [v for k, v in rec.items() if k.endswith("_LIFTorch_output")][:-1] + [out]

    def export(self, model, conv):
        from rockpool.nn.modules.torch.nir import to_nir
        return to_nir(model)


class Norse:
    name = "norse"
    trains_bias = True    # torch's Linear and Conv2d have a bias by default: norse users'

    def build(self, conv):
        import norse.torch as norse
        torch.manual_seed(5)
        if conv:   # biases train too: into LIFCell's decaying current (the bias axon)
            return norse.SequentialState(torch.nn.Conv2d(1, 4, 3, padding=1),
                                         norse.LIFCell(), torch.nn.Flatten(),
                                         torch.nn.Linear(256, 10), norse.LIFCell())
        return norse.SequentialState(torch.nn.Flatten(), torch.nn.Linear(64, HIDDEN),
                                     norse.LIFCell(), torch.nn.Linear(HIDDEN, 10),
                                     norse.LIFCell())

    def forward(self, model, x, grad=True):
        import norse.torch as norse

        def run():
            state = None
            for t in range(x.shape[1]):
                _, state = model(x[:, t], state)
        with torch.set_grad_enabled(grad):
            _, layers = _hooked(model, norse.LIFCell, run)
        return [torch.stack(v, 1) for v in layers]

    def export(self, model, conv):
        import norse.torch as norse
        with warnings.catch_warnings():  # nirtorch 2.6 deprecates the tracer norse uses
            warnings.simplefilter("ignore", DeprecationWarning)
            g = norse.to_nir(model, torch.zeros(1, 1, 8, 8))
        for key, node in list(g.nodes.items()):
            # norse 1.1.0's to_nir has no Flatten: its node comes back as None; a user puts
            # the NIR node in by hand
            if node is None:
                g.nodes[key] = nir.Flatten(input_type=None, start_dim=0, end_dim=-1)
        return g


LIBRARIES = {lib.name: lib for lib in (SnnTorch(), Sinabs(), SpikingJelly(), Rockpool(),
                                       Norse())}
CASES = [(name, conv) for name in LIBRARIES for conv in (False, True)]


def _two(v):
    return tuple(int(a) for a in np.broadcast_to(np.asarray(v).ravel(), (2,)))


def _fill_types(g, shape=(1, 8, 8)):
    """snnTorch, sinabs and norse leave node types None (Conv2d, pools, Flatten): nir 1.0.8's
    nir.write cannot write None, and its infer_types fails on these graphs (their Input
    types carry the sample's batch/time dimensions, their 0-d neuron types mismatch). A user
    fills in the missing shapes along the chain from one sample's shape."""
    import torch.nn.functional as F
    succ = dict(g.edges)
    key = next(k for k, n in g.nodes.items() if isinstance(n, nir.Input))
    while key in succ:
        key = succ[key]
        node = g.nodes[key]
        x = torch.zeros((1,) + tuple(int(v) for v in shape))
        if isinstance(node, nir.Conv1d):   # sinabs writes stride etc. as 1-tuples
            w = torch.as_tensor(np.asarray(node.weight), dtype=torch.float32)
            one = [int(np.asarray(v).ravel()[0]) for v in (node.stride, node.padding,
                                                            node.dilation)]
            y = F.conv1d(x, w, stride=one[0], padding=one[1], dilation=one[2])
            if node.input_shape is None:   # sinabs leaves it None, which nir cannot write
                node.input_shape = int(shape[1])
        elif isinstance(node, nir.Conv2d):
            w = torch.as_tensor(np.asarray(node.weight), dtype=torch.float32)
            y = F.conv2d(x, w, stride=_two(node.stride), padding=_two(node.padding))
            if node.input_shape is None:
                node.input_shape = np.array(shape[1:])
        elif isinstance(node, (nir.AvgPool2d, nir.SumPool2d)):
            y = F.avg_pool2d(x, _two(node.kernel_size), _two(node.stride))
        elif isinstance(node, nir.Flatten):
            y = x.reshape(1, -1)
        elif isinstance(node, (nir.Affine, nir.Linear)):
            y = torch.zeros(1, np.asarray(node.weight).shape[0])
        else:
            y = x
        out = tuple(y.shape[1:])
        if node.input_type.get("input") is None:
            node.input_type = {"input": np.array(shape)}
        if getattr(node, "output_type", {}).get("output") is None:
            node.output_type = {"output": np.array(out)}
        shape = out


def _write(g, path, shape=(1, 8, 8)):
    _fill_types(g, shape)
    # norse, sinabs and snnTorch write 0-d parameters, which nir 1.0.8's gzip filter refuses
    # ("Scalar datasets don't support chunk/filter options"): a user writes uncompressed
    try:
        nir.write(path, g)
    except TypeError:
        nir.write(path, g, compression=None)


@pytest.fixture(scope="session")
def networks(digits_data, tmp_path_factory):
    """Train, export and write each library's networks once: {(lib, conv): dict}."""
    xtr, ytr, xte, yte = digits_data
    root = tmp_path_factory.mktemp("exporters")
    calib = root / "calib.npz"
    np.savez(calib, inputs=xtr[:200].astype(np.uint8))
    np.savez(root / "calib_flat.npz", inputs=xtr[:200].reshape(200, T, 64).astype(np.uint8))
    out = {}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny layers: threads only add overhead on a loaded machine
    try:
        for name, conv in CASES:
            lib = LIBRARIES[name]
            if not (conv and getattr(lib, "no_conv", None)):
                out[(name, conv)] = _make(lib, conv, root, calib, xtr, ytr, xte, yte)
    finally:
        torch.set_num_threads(threads)
    return out, calib


CONV1D_LIBRARIES = ("sinabs", "spikingjelly")
"""The exporters that write NIR's Conv1d: snnTorch 1.0.0's export_to_nir and norse 1.1.0's
to_nir have no Conv1d mapping (they write the node as None, snnTorch with "module not
implemented: Conv1d"), rockpool 3.1.0's to_nir no convolution at all."""


@pytest.fixture(scope="session")
def networks_1d(digits_data, tmp_path_factory):
    """Conv1d networks of the libraries that export them, trained on the digits with the
    8 image rows as channels, (8, 8) per step: {lib: dict}, calib, test inputs."""
    xtr, ytr, xte, yte = (a.reshape(a.shape[:2] + (8, 8)) if a.ndim == 5 else a
                          for a in digits_data)
    root = tmp_path_factory.mktemp("exporters_1d")
    calib = root / "calib.npz"
    np.savez(calib, inputs=xtr[:200].astype(np.uint8))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        out = {name: _make(LIBRARIES[name], "1d", root, calib, xtr, ytr, xte, yte)
               for name in CONV1D_LIBRARIES}
    finally:
        torch.set_num_threads(threads)
    return out, xte, yte


def _make(lib, conv, root, calib, xtr, ytr, xte, yte):
    """Train one network in its library, record its own test run, export and write it."""
    model = lib.build(conv)
    _train(_weights(model, getattr(lib, "trains_bias", False)),
           lambda x: lib.forward(model, x), xtr, ytr)
    model.eval()
    layers = [s.detach().numpy() for s in lib.forward(model, torch.as_tensor(
        xte, dtype=torch.float32), grad=False)]
    path = root / f"{lib.name}_{'conv1d' if conv == '1d' else 'conv' if conv else 'dense'}.nir"
    _write(lib.export(model, conv), path, xtr.shape[2:])
    flat = getattr(lib, "flat", False)
    return {"path": path, "spikes": layers, "flat": flat,
            "calib": root / "calib_flat.npz" if flat else calib,
            "acc": float((layers[-1].sum(1).argmax(1) == yte).mean())}


def _compile(path, calib, out_dir, capsys, *extra):
    capsys.readouterr()
    rc = main(["compile", str(path), "--calib", str(calib), "-o", str(out_dir), "--quiet",
               *extra])
    err = capsys.readouterr().err
    assert rc == 0, err
    return json.loads((out_dir / "report.json").read_text()), err


ASSUMED = {"snntorch": "reset_mechanism", "sinabs": "norm_input", "spikingjelly": "v_reset",
           "rockpool": "w_in is not written", "norse": "norse#411"}
"""A word of what each exporter leaves unsaid, which the report must state as assumed."""
EXPECTED_DT = {"snntorch": (1e-4, False), "sinabs": (1.0, False),
               "spikingjelly": (1e-4, False), "rockpool": (1e-3, False),
               "norse": (1e-3, True)}


@pytest.mark.parametrize("name,conv", CASES,
                         ids=[f"{n}-{'conv' if c else 'dense'}" for n, c in CASES])
def test_exported_network_compiles_faithfully(networks, digits_data, name, conv, tmp_path,
                                              capsys):
    nets, calib = networks
    lib = LIBRARIES[name]
    if (name, conv) not in nets:
        pytest.skip(lib.no_conv)
    net = nets[(name, conv)]
    _, _, xte, yte = digits_data
    if net["flat"]:
        xte = xte.reshape(len(xte), T, 64)
    _check_faithful(name, "conv" if conv else "dense", net, xte, yte, tmp_path, capsys)


@pytest.mark.parametrize("name", CONV1D_LIBRARIES)
def test_exported_conv1d_network_compiles_faithfully(networks_1d, name, tmp_path, capsys):
    """A Conv1d network exported by sinabs (stride 2) or spikingjelly (dilation 2)
    compiles to FxConv1d and keeps the library's spikes and accuracy, as above."""
    nets, xte, yte = networks_1d
    report, _ = _check_faithful(name, "conv1d", nets[name], xte, yte, tmp_path, capsys)
    convs = [r for r in report["layers"] if r["op"] == "FxConv1d"]
    assert len(convs) == 1 and len(convs[0]["shape"]) == 2, report["layers"]
    from snncompile.build import Build
    node = Build.load(tmp_path / "b").float_graph.node(convs[0]["name"])
    assert (node.stride, node.dilation) == ((2, 1) if name == "sinabs" else (1, 2))


def _check_faithful(name, kind, net, xte, yte, tmp_path, capsys):
    """Compile the library's file with the CLI; its report, float spikes per layer and
    compiled accuracy against the library's own run. Returns (report, stderr)."""
    report, err = _compile(net["path"], net["calib"], tmp_path / "b", capsys)
    info = report["nir"]
    dt, guessed = EXPECTED_DT[name]
    assert info["convention"] == name, info
    assert info["dt"] == pytest.approx(dt) and info["dt_guessed"] is guessed, info
    assert ("does not record its time step" in err) is guessed, err
    assert any(ASSUMED[name] in a for a in info["assumptions"]), info["assumptions"]
    md = (tmp_path / "b" / "report.md").read_text()
    assert f"NIR time step: dt = {dt:g}" in md and f"convention: {name}" in md

    from snncompile.build import Build
    from snncompile.backends.sim import Simulator
    from snncompile.backends.float_model import run_float
    from snncompile.verify.compare import decision
    build = Build.load(tmp_path / "b")
    # the float graph spikes like the library, layer by layer
    floats = run_float(build.float_graph, xte)
    assert len(floats) == len(net["spikes"])
    tol = SPIKE_TOL
    diffs = []
    for (layer, ours), theirs in zip(floats.items(), net["spikes"]):
        a, b = int(np.count_nonzero(ours)), int(np.count_nonzero(theirs))
        assert b > 0, f"{name} layer {layer} is silent in the library"
        assert abs(a - b) <= tol * b, f"{layer}: snncompile float {a} spikes, {name} {b}"
        diffs.append(f"{layer} {a}/{b}")
    # the compiled network keeps the library's accuracy
    out = build.graph.inputs(build.graph.output_node().name)[0]
    sim = Simulator(build.graph, build.target.numerics).run(xte)
    acc = float((decision(build.graph.node(out), sim.spikes[out]) == yte).mean())
    assert net["acc"] > 0.5, f"{name} trained to only {net['acc']:.1%}"
    assert abs(acc - net["acc"]) <= ACC_TOL, \
        f"{name}: compiled {acc:.2%}, {name} itself {net['acc']:.2%}"
    if getattr(LIBRARIES[name], "trains_bias", False):   # the biases are compiled, not dropped
        biased = [n for n in build.graph.order()
                  if getattr(build.graph.node(n), "bias_mant", None) is not None
                  and build.graph.node(n).is_synapse]
        assert len(biased) == 2, biased
    print(f"{name} {kind}: {name} {net['acc']:.2%}, compiled "
          f"{acc:.2%}, dt {info['dt']:g} ({info['dt_source']}); spikes float/library: "
          + ", ".join(diffs))
    return report, err


def test_dt_flag_and_conflicts(networks, tmp_path, capsys):
    """--dt silences the guess (norse); a file that records dt refuses a different --dt;
    --nir-convention overrides detection; all on the real command line (python -m)."""
    import subprocess
    nets, calib = networks
    norse_file = nets[("norse", False)]["path"]
    report, err = _compile(norse_file, calib, tmp_path / "a", capsys, "--dt", "1e-3")
    assert report["nir"]["dt_source"].startswith("given") and "warning" not in err
    # the guess is on stderr from the real entry point too
    proc = subprocess.run([sys.executable, "-m", "snncompile.cli", "compile", str(norse_file),
                           "--calib", str(calib), "-o", str(tmp_path / "c"), "--quiet"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "assumed dt = 0.001 s (norse.torch.to_nir's default)" in proc.stderr
    snn_file = nets[("snntorch", False)]["path"]
    capsys.readouterr()
    rc = main(["compile", str(snn_file), "--calib", str(calib), "-o", str(tmp_path / "d"),
               "--dt", "1e-3"])
    err = capsys.readouterr().err
    assert rc == 2 and "contradicts the dt the file records (0.0001 s" in err
    assert err.count("\n") == 1
    # norse's file read with the generic NIR equations: its tau * dt is shorter than dt,
    # refused in one line that names the flag
    capsys.readouterr()
    rc = main(["compile", str(norse_file), "--calib", str(calib), "-o", str(tmp_path / "e"),
               "--nir-convention", "nir", "--dt", "1e-3"])
    err = capsys.readouterr().err
    assert rc == 2 and "shorter than dt" in err and "--nir-convention" in err
    assert err.count("\n") == 1
