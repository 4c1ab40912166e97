"""Per-neuron leaks and thresholds from a real exporter: snnTorch 1.0.0 `Leaky` with a
per-neuron (dense) or per-channel (conv, shape (C, 1, 1)) `beta` and `threshold`, both
trained (`learn_beta`, `learn_threshold`, PLIF style) on digits together with the
weights, exported with snnTorch's own `export_to_nir` (which writes the arrays as they
are) and compiled from the command line for loihi2. Asserted: the imported layers carry
per-neuron du (and, where no Dense can take a threshold ratio, per-neuron vth); snncompile's
float graph spikes as snnTorch does (per layer within test_nir_exporters.SPIKE_TOL); the
compiled network keeps snnTorch's accuracy (ACC_TOL); loihi1 refuses in one line."""
import numpy as np
import pytest

nir = pytest.importorskip("nir")
torch = pytest.importorskip("torch")
pytest.importorskip("snntorch")
pytestmark = pytest.mark.filterwarnings(
    "ignore:nirtorch.extract_nir_graph is being deprecated:DeprecationWarning")

from snncompile.cli import main  # noqa: E402
from snncompile.ir import LIF, per_neuron  # noqa: E402
from test_nir_exporters import (ACC_TOL, SPIKE_TOL, T, SnnTorch, _compile, _train,  # noqa
                                _write, digits_data)

HIDDEN = 16


class PerNeuronSnnTorch(SnnTorch):
    """snnTorch Leaky layers whose beta and threshold start different in every neuron (or
    channel) and are trained."""

    def build(self, conv):
        import snntorch as snn
        torch.manual_seed(2)

        def leaky(shape, **kw):
            beta = 0.55 + 0.35 * torch.rand(shape)
            vth = 0.6 + 0.8 * torch.rand(shape)
            return snn.Leaky(beta=beta, threshold=vth, learn_beta=True,
                             learn_threshold=True, init_hidden=True, reset_mechanism="zero",
                             **kw)
        if conv:
            return torch.nn.Sequential(
                torch.nn.Conv2d(1, 4, 3, padding=1), leaky((4, 1, 1)),
                torch.nn.AvgPool2d(2), torch.nn.Flatten(), torch.nn.Linear(64, 10),
                leaky((10,), output=True))
        return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, HIDDEN),
                                   leaky((HIDDEN,)), torch.nn.Linear(HIDDEN, 10),
                                   leaky((10,), output=True))


@pytest.fixture(scope="module", params=[False, True], ids=["dense", "conv"])
def exported(request, digits_data, tmp_path_factory):
    conv = request.param
    xtr, ytr, xte, yte = digits_data
    lib = PerNeuronSnnTorch()
    model = lib.build(conv)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if n.endswith("weight"):
                p.mul_(2.0)
    torch.set_num_threads(1)
    weights = [p for n, p in model.named_parameters() if n.endswith("weight")]
    neuron = [p for n, p in model.named_parameters() if not n.endswith(("weight", "bias"))]
    # the neuron parameters at a tenth of the rate, so that beta stays below 1 (snnTorch
    # clamps beta in its forward pass but its exporter writes the raw value)
    _train([{"params": weights}, {"params": neuron, "lr": 3e-3}],
           lambda x: lib.forward(model, x), xtr[:400], ytr[:400], epochs=2)
    model.eval()
    spikes = [s.detach().numpy() for s in lib.forward(
        model, torch.as_tensor(xte, dtype=torch.float32), grad=False)]
    root = tmp_path_factory.mktemp("pn")
    path = root / f"snntorch_pn_{'conv' if conv else 'dense'}.nir"
    _write(lib.export(model, conv), path)
    calib = root / "calib.npz"
    np.savez(calib, inputs=xtr[:200].astype(np.uint8))
    betas = [m.beta.detach().numpy() for m in model if hasattr(m, "beta")]
    assert all(b.max() < 1 for b in betas)
    return dict(conv=conv, path=path, calib=calib, spikes=spikes, betas=betas,
                acc=float((spikes[-1].sum(1).argmax(1) == yte).mean()))


def test_snntorch_per_neuron_beta_and_threshold_compile(exported, digits_data, tmp_path,
                                                        capsys):
    from snncompile.backends.float_model import run_float
    from snncompile.backends.sim import Simulator
    from snncompile.build import Build
    from snncompile.verify.compare import decision
    _, _, xte, yte = digits_data
    assert all(np.unique(b).size > 1 for b in exported["betas"])   # really per neuron
    _compile(exported["path"], exported["calib"], tmp_path / "b", capsys)
    build = Build.load(tmp_path / "b")
    lifs = build.float_graph.nodes(LIF)
    for node, beta in zip(lifs, exported["betas"]):
        assert isinstance(node.dv, np.ndarray) and per_neuron(node), node.name
        # snnTorch's Leaky decays by beta: dv = 1 - beta, element for element
        want = np.broadcast_to(1 - beta.astype(np.float64), node.shape)
        np.testing.assert_allclose(node.dv, want, rtol=1e-5)
    if exported["conv"]:   # per-channel thresholds of a conv layer stay per neuron
        assert isinstance(lifs[0].vth, np.ndarray) and np.unique(lifs[0].vth).size == 4
    fixed = [build.graph.node(n.name) for n in lifs]
    assert all(per_neuron(f) for f in fixed)
    floats = run_float(build.float_graph, xte)
    counts = []
    for (layer, ours), theirs in zip(floats.items(), exported["spikes"]):
        a, b = int(np.count_nonzero(ours)), int(np.count_nonzero(theirs))
        assert b > 0 and abs(a - b) <= SPIKE_TOL * b, f"{layer}: ours {a}, snnTorch {b}"
        counts.append(f"{layer} {a}/{b}")
    out = build.graph.inputs(build.graph.output_node().name)[0]
    sim = Simulator(build.graph, build.target.numerics).run(xte)
    acc = float((decision(build.graph.node(out), sim.spikes[out]) == yte).mean())
    assert exported["acc"] > 0.3, exported["acc"]
    assert abs(acc - exported["acc"]) <= ACC_TOL, (acc, exported["acc"])
    print(f"snnTorch per-neuron {'conv' if exported['conv'] else 'dense'}: snnTorch "
          f"{exported['acc']:.2%}, compiled {acc:.2%}; spikes float/snnTorch: "
          + ", ".join(counts))


def test_loihi1_refuses_the_per_neuron_file_in_one_line(exported, tmp_path, capsys):
    capsys.readouterr()
    rc = main(["compile", str(exported["path"]), "--calib", str(exported["calib"]),
               "--target", "loihi1", "-o", str(tmp_path / "b1"), "--quiet"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc != 0 and len(err) == 1, err
    assert "per-neuron du/dv/vth need programmable neurons; target loihi1" in err[0]
