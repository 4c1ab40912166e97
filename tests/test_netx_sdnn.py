"""lava-dl netx sigma-delta (SDNN) networks: our importer, simulator, integer reference and
Lava lowering agree value for value with lava-dl's own netx loader running in Lava
(`tests/netx_lava.py`), on networks exported by slayer's `block.sigma_delta`."""
from __future__ import annotations

import h5py
import numpy as np
import pytest
from hypothesis import given, settings

from hypothesis_profile import examples

import snncompile  # noqa: F401  (installs the Lava import fix)
from netx_files import add_dataset, export_blocks
from strategies import sigma_delta_networks
from snncompile.formats.netx.run_lava import run_netx
from snncompile.errors import OverflowDetected, UnsupportedError
from snncompile.formats.netx.write import export_netx
from snncompile.formats.netx.read import import_netx, lava_network_kwargs
from snncompile.ir import (Flatten, FxConv2d, FxDense, FxSigmaDelta, Graph, Input,
                           NEURON_TYPES, Output)
from snncompile.ir.graph import graphs_equal
from snncompile.backends.reference import reference_run
from snncompile.backends.sim.simulator import Simulator

torch = pytest.importorskip("torch")
slayer = pytest.importorskip("lava.lib.dl.slayer")

SD = {"threshold": 0.1, "activation": torch.nn.functional.relu}


def _export(blocks, path, x_shape, seed=0):
    """Run slayer sigma-delta blocks once on graded input and write netx HDF5."""
    torch.manual_seed(seed)
    export_blocks(blocks, path, torch.rand(1, *x_shape, 4))
    return path


def _conv_net(path, seed=0):
    torch.manual_seed(seed)
    blocks = [slayer.block.sigma_delta.Input(SD),
              slayer.block.sigma_delta.Conv(SD, 2, 4, 3, padding=1, stride=2, weight_scale=2),
              slayer.block.sigma_delta.Flatten(),
              slayer.block.sigma_delta.Dense(SD, 64, 6, weight_scale=2),
              slayer.block.sigma_delta.Output(SD, 6, 3)]
    return _export(blocks, path, (2, 8, 8), seed)


def _all_equal(expected: dict, got: dict, what: str):
    for name, values in expected.items():
        diff = int(np.count_nonzero(np.asarray(got[name]) != values))
        assert diff == 0, f"{name}: {diff} graded-spike mismatches ({what})"


# ------------------------------------------------------------------ netx in Lava
@pytest.mark.lava
def test_slayer_sigma_delta_network_matches_netx_in_lava(tmp_path):
    """Input (delta encoder) + Conv + Flatten + Dense + Output (sigma readout), with
    positive biases written into the file, so that layers send messages before their first
    input arrives (sigma-delta neurons are never reset): netx's loader in Lava, our
    simulator, the integer reference and our own Lava lowering give the same integers."""
    path = _conv_net(tmp_path / "sd.net")
    rng = np.random.default_rng(1)
    add_dataset(path, "layer/1/bias", rng.integers(0, 40, 4))            # per channel
    add_dataset(path, "layer/3/bias", rng.integers(-20, 30, 6))
    graph = import_netx(path)
    assert [type(n) for n in graph.nodes()] == [Input, FxSigmaDelta, FxConv2d, FxSigmaDelta,
                                                Flatten, FxDense, FxSigmaDelta, FxDense,
                                                FxSigmaDelta, Output]
    assert [n.role for n in graph.nodes(FxSigmaDelta)] == ["delta", "sigma_delta",
                                                           "sigma_delta", "sigma"]
    assert [n.num_message_bits for n in graph.nodes((FxDense, FxConv2d))] == [16, 16, 16]
    assert graph.input_node().encoding == "graded"
    x = rng.integers(0, 256, (10, 2, 8, 8))
    netx = run_netx(path, graph, x)
    ours = Simulator(graph, strict=True).run(x[None]).spikes
    _all_equal({k: v[None] for k, v in netx.items()}, ours, "simulator vs netx in Lava")
    _all_equal(ours, reference_run(graph, x[None]), "reference vs simulator")
    from snncompile.backends.lava.run import run_lava
    _all_equal(ours, run_lava(graph, x[None]).spikes, "our Lava lowering vs simulator")
    assert all(np.count_nonzero(v) > 10 for v in netx.values()), \
        {k: int(np.count_nonzero(v)) for k, v in netx.items()}
    # the bias really acts before the first input: L1 sends at local step 0 although the
    # encoder's first frame reaches it only then, and the simulator agrees on the
    # pre-window messages that netx's L3 integrates
    assert np.count_nonzero(netx["L1_sd"][0]) > 0


@pytest.mark.lava
def test_dense_sdnn_without_input_layer_reads_binary_spikes(tmp_path):
    """No input layer: netx's first dense reads binary spikes (input_message_bits 0), the
    later ones graded messages."""
    torch.manual_seed(2)
    blocks = [slayer.block.sigma_delta.Dense(SD, 10, 8, weight_scale=3),
              slayer.block.sigma_delta.Dense(SD, 8, 4, weight_scale=3)]
    path = _export(blocks, tmp_path / "d.net", (10,), seed=2)
    with h5py.File(path, "a") as f:   # binary input is small next to 2**12-scaled state:
        for i in (0, 1):               # full-range weights and a zero threshold
            w = f[f"layer/{i}/weight"][()]
            f[f"layer/{i}/weight"][...] = np.round(w * 250 / np.abs(w).max())
            f[f"layer/{i}/neuron/vThMant"][()] = 0
    graph = import_netx(path)
    assert graph.input_node().encoding == "spikes"
    assert [n.num_message_bits for n in graph.nodes(FxDense)] == [0, 16]
    x = (np.random.default_rng(3).random((12, 10)) < 0.4).astype(np.int32)
    netx = run_netx(path, graph, x)
    ours = Simulator(graph).run(x[None]).spikes
    _all_equal({k: v[None] for k, v in netx.items()}, ours, "simulator vs netx in Lava")
    _all_equal(ours, reference_run(graph, x[None]), "reference vs simulator")
    assert sum(np.count_nonzero(v) for v in netx.values()) > 10


@pytest.mark.lava
def test_sdnn_with_synaptic_delays_matches_netx_in_lava(tmp_path):
    """Per-synapse and per-output delays on graded messages (netx's DelayDense)."""
    torch.manual_seed(5)
    blocks = [slayer.block.sigma_delta.Input(SD),
              slayer.block.sigma_delta.Dense(SD, 12, 8, weight_scale=2),
              slayer.block.sigma_delta.Output(SD, 8, 3, weight_scale=2)]
    path = _export(blocks, tmp_path / "dd.net", (12,), seed=5)
    rng = np.random.default_rng(0)
    add_dataset(path, "layer/1/delay", rng.integers(0, 4, (8, 12)))
    add_dataset(path, "layer/2/delay", rng.integers(0, 3, 3))
    graph = import_netx(path)
    assert graph.node("L1_dense").delay is not None and graph.node("L2_dense").delay is not None
    x = rng.integers(0, 256, (12, 12))
    netx = run_netx(path, graph, x)
    ours = Simulator(graph).run(x[None]).spikes
    _all_equal({k: v[None] for k, v in netx.items()}, ours, "simulator vs netx in Lava")
    _all_equal(ours, reference_run(graph, x[None]), "reference vs simulator")
    assert np.count_nonzero(netx["L1_sd"]) > 10


def test_message_bits_entry_is_honoured_and_checked(tmp_path):
    """`messageBits` sets the width the next synapse reads (netx 0.6.0 itself cannot load
    such a file: NetDict does not know the key); messages wider than that are counted."""
    path = _conv_net(tmp_path / "m.net")
    add_dataset(path, "layer/1/neuron/messageBits", 8)
    graph = import_netx(path)
    assert graph.node("L1_sd").num_message_bits == 8
    assert graph.node("L3_dense").num_message_bits == 8
    x = np.random.default_rng(8).integers(0, 256, (1, 6, 2, 8, 8))
    res = Simulator(graph).run(x)
    assert res.overflow["L1_sd"]["message_bits"] > 0      # 8 signed bits hold |v| < 128
    with pytest.raises(OverflowDetected, match="8 signed message bits"):
        Simulator(graph, strict=True).run(x)
    with pytest.raises(UnsupportedError, match="messageBits"):
        export_netx(graph, tmp_path / "m2.net")


@pytest.mark.lava
def test_signed_input_frames_match_netx_in_lava(tmp_path):
    """Signed 12-bit frames (e.g. audio) through the delta encoder: negative changes are
    sent as negative graded spikes, identically in every backend and in netx."""
    path = _conv_net(tmp_path / "s.net", seed=3)
    graph = import_netx(path, input_bits=12, input_signed=True)
    assert graph.input_node().value_range() == (-2048, 2047)
    x = np.random.default_rng(12).integers(-2048, 2048, (8, 2, 8, 8))
    netx = run_netx(path, graph, x)
    ours = Simulator(graph, strict=False).run(x[None]).spikes
    _all_equal({k: v[None] for k, v in netx.items()}, ours, "simulator vs netx in Lava")
    _all_equal(ours, reference_run(graph, x[None]), "reference vs simulator")
    from snncompile.backends.lava.run import run_lava
    _all_equal(ours, run_lava(graph, x[None]).spikes, "our Lava lowering vs simulator")
    assert (netx["L0_delta"] < 0).sum() > 50
    from snncompile.errors import InputFileError
    with pytest.raises(InputFileError, match=r"\[-2048, 2047\]"):
        run_lava(graph, np.full((1, 2, 2, 8, 8), 2048))


def test_lava_network_kwargs_for_sdnn(tmp_path):
    graph = import_netx(_conv_net(tmp_path / "k.net"))
    kw = lava_network_kwargs(graph, 10)
    assert kw["skip_layers"] == 1 and kw["reset_interval"] is None and kw["spike_exp"] == 6


# ------------------------------------------------------------------ semantics
def _hand_graph(cum_error=False, bias=0):
    rng = np.random.default_rng(4)
    nodes = [Input("in", shape=(5,), encoding="graded", bits=8),
             FxSigmaDelta("enc", shape=(5,), role="delta", vth=3, cum_error=cum_error),
             FxDense("d1", weight=rng.integers(-60, 60, (4, 5)).astype(np.int32) * 4,
                     weight_exp=-2, num_weight_bits=7, sign_mode="mixed",
                     num_message_bits=16),
             FxSigmaDelta("sd1", shape=(4,), vth=20, cum_error=cum_error,
                          bias_mant=np.full(4, bias, np.int32)),
             FxDense("d2", weight=rng.integers(0, 250, (2, 4)).astype(np.int32),
                     weight_exp=0, num_weight_bits=8, sign_mode="excitatory",
                     num_message_bits=16),
             FxSigmaDelta("out", shape=(2,), role="sigma"),
             Output("o")]
    return Graph.sequential(nodes, meta={"source": "hand"})


@pytest.mark.parametrize("cum_error", [False, True])
def test_reference_equals_simulator_on_sigma_delta_semantics(cum_error):
    """Both implementations of the FxSigmaDelta recurrence (numpy global-time steps and
    torch layer-wise) agree, including cumulative-error mode and a bias."""
    graph = _hand_graph(cum_error, bias=7)
    x = np.random.default_rng(5).integers(0, 256, (6, 15, 5))
    sim = Simulator(graph).run(x, batch_size=4).spikes
    ref = reference_run(graph, x)
    _all_equal(sim, ref, "reference vs simulator")
    assert np.count_nonzero(sim["sd1"]) > 20 and sim["sd1"].dtype == np.int32


def test_encoder_sends_scaled_changes_only():
    """Delta encoder: frame changes of at least vth are sent as change * 2**spike_exp; a
    constant input sends nothing after its first frame."""
    graph = _hand_graph()
    x = np.zeros((1, 6, 5), np.int64)
    x[0, :, 0] = 10                     # constant
    x[0, 3:, 1] = 2                     # change below vth 3: never sent
    x[0, 2:, 2] = 200
    enc = Simulator(graph).run(x).spikes["enc"][0]
    assert enc[:, 0].tolist() == [640, 0, 0, 0, 0, 0]
    assert not enc[:, 1].any()
    assert enc[:, 2].tolist() == [0, 0, 200 * 64, 0, 0, 0]


def test_graded_int32_overflow_is_reported():
    graph = _hand_graph()
    graph.node("enc").spike_exp = 7
    graph.node("d1").weight_exp = 7
    x = np.full((1, 4, 5), 255, np.int64)
    res = Simulator(graph).run(x)
    assert sum(sum(v.values()) for v in res.overflow.values()) > 0
    with pytest.raises(OverflowDetected, match="int32"):
        Simulator(graph, strict=True).run(x)


def test_mixed_lif_and_sigma_delta_graphs_are_refused():
    from snncompile.ir import FxLIF
    nodes = [Input("in", shape=(3,)),
             FxDense("d", weight=np.ones((3, 3), np.int32), num_message_bits=0),
             FxSigmaDelta("sd", shape=(3,), vth=1),
             FxDense("d2", weight=np.ones((2, 3), np.int32), num_message_bits=16),
             FxLIF("l", shape=(2,), vth=1), Output("o")]
    with pytest.raises(UnsupportedError, match="mix sigma-delta"):
        Simulator(Graph.sequential(nodes))


# ------------------------------------------------------------------ export
def test_sdnn_export_round_trip(tmp_path):
    path = _conv_net(tmp_path / "a.net")
    add_dataset(path, "layer/1/bias", np.arange(4) * 3)
    once = import_netx(path)
    export_netx(once, tmp_path / "b.net")
    twice = import_netx(tmp_path / "b.net")
    twice.meta["source"] = once.meta["source"]
    assert graphs_equal(once, twice)
    hand = _hand_graph(bias=5)
    export_netx(hand, tmp_path / "h.net")
    back = import_netx(tmp_path / "h.net")
    x = np.random.default_rng(6).integers(0, 256, (2, 9, 5))
    a, b = Simulator(hand).run(x).spikes, Simulator(back).run(x).spikes
    for na, nb in zip([n.name for n in hand.nodes(NEURON_TYPES)],
                      [n.name for n in back.nodes(NEURON_TYPES)]):
        np.testing.assert_array_equal(a[na], b[nb])


def test_sdnn_export_refuses_what_netx_cannot_express(tmp_path):
    for change, match in ((lambda g: setattr(g.node("sd1"), "cum_error", True), "cumulative"),
                          (lambda g: setattr(g.node("sd1"), "state_exp", 4), "state_exp"),
                          (lambda g: setattr(g.node("d2"), "num_message_bits", 8),
                           "message bits"),
                          (lambda g: g.node("out").bias_mant.__setitem__(0, 1), "bias")):
        graph = _hand_graph()
        change(graph)
        with pytest.raises(UnsupportedError, match=match):
            export_netx(graph, tmp_path / "x.net")
        assert not (tmp_path / "x.net").exists()


# ------------------------------------------------------------------ refusals
@pytest.mark.parametrize("edit, match", [
    (lambda f: f["layer/3/neuron/type"].__setitem__((), b"CUBA"), "mixes CUBA and SDNN"),
    (lambda f: f["layer/3/neuron/activation"].__setitem__((), b"tanh"), "activation 'tanh'"),
    (lambda f: f["layer/3/neuron/vThMant"].__setitem__((), 1 << 20), r"vThMant \(1048576\)"),
    (lambda f: f["layer/4"].create_dataset("bias", data=np.ones(3)), "sigma output"),
    (lambda f: f["layer/1"].create_dataset("bias", data=np.full(4, 1 << 20)), "overflows"),
    (lambda f: f["layer/3/neuron"].create_dataset("messageBits", data=40), "messageBits"),
])
def test_unsupported_sdnn_files_get_one_clear_error(tmp_path, edit, match):
    path = _conv_net(tmp_path / "bad.net")
    with h5py.File(path, "a") as f:
        if "CUBA" in match:           # a CUBA neuron needs its own fields
            for key, value in (("iDecay", 0), ("vDecay", 4096)):
                f["layer/3/neuron"].create_dataset(key, data=value)
        edit(f)
    with pytest.raises(UnsupportedError, match=match):
        import_netx(path)


# ------------------------------------------------------------------ command line
@pytest.mark.lava
def test_cli_compiles_verifies_and_exports_a_slayer_sdnn(tmp_path, capsys):
    """`snncompile compile net.net`, `verify` on three backends (exit 0), `energy --json`,
    `export --format netx`; graded input values outside input_bits are one clear line."""
    import json

    from snncompile.cli import main
    from snncompile.data import save_inputs

    path = _conv_net(tmp_path / "sd.net")
    build = tmp_path / "sd.build"
    assert main(["compile", str(path), "-o", str(build), "--quiet"]) == 0
    rng = np.random.default_rng(9)
    x = rng.integers(0, 256, (3, 8, 2, 8, 8))
    save_inputs(tmp_path / "x.npz", x, np.array([0, 1, 2]))
    capsys.readouterr()
    assert main(["verify", str(build), "--inputs", str(tmp_path / "x.npz"), "--json",
                 str(tmp_path / "v.json"), "--backends", "reference,sim,lava,netx"]) == 0
    out = capsys.readouterr().out
    assert "EQUIVALENT: 0 mismatching" in out and "L4_sigma" in out
    report = json.loads((tmp_path / "v.json").read_text())
    assert report["equivalent"] and report["backends"]["lava"]["spikes"] > 50
    assert report["backends"]["netx"]["spikes"] == report["backends"]["lava"]["spikes"]
    assert [lay["mismatches"]["netx"] for lay in report["layers"]] == [0, 0, 0, 0]
    assert main(["run", str(build), "--inputs", str(tmp_path / "x.npz"), "-o",
                 str(tmp_path / "r.npz")]) == 0
    with np.load(tmp_path / "r.npz") as run:        # graded values kept, not cast to uint8
        ref = reference_run(import_netx(path), x)["L4_sigma"]
        np.testing.assert_array_equal(run["output_spikes"], ref)
        np.testing.assert_array_equal(run["predictions"], ref[:, -1].argmax(1))
    assert main(["energy", str(build), "--inputs", str(tmp_path / "x.npz"), "--json",
                 str(tmp_path / "e.json")]) == 0
    energy = json.loads((tmp_path / "e.json").read_text())
    assert any("graded" in note for note in energy["notes"])
    assert main(["export", str(build), "--format", "netx", "-o", str(tmp_path / "b.net")]) == 0
    assert graphs_equal_but_source(import_netx(path), import_netx(tmp_path / "b.net"))
    save_inputs(tmp_path / "big.npz", x + 300, np.array([0, 1, 2]))
    capsys.readouterr()
    rc = main(["verify", str(build), "--inputs", str(tmp_path / "big.npz")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and "255" in err, err


def graphs_equal_but_source(a: Graph, b: Graph) -> bool:
    b.meta["source"] = a.meta["source"]
    return graphs_equal(a, b)



# ------------------------------------------------------------------ random networks
@settings(max_examples=examples(60), deadline=None)
@given(sigma_delta_networks())
def test_simulator_equals_reference_on_random_sigma_delta_networks(case):
    """Any exponents (int32 wraps included), thresholds, biases, cumulative error, conv or
    dense, encoder or binary input: the two implementations agree, whatever the batching."""
    graph, x = case
    ref = reference_run(graph, x)
    for batch in (1, 2):
        res = Simulator(graph).run(x, batch_size=batch)
        _all_equal(ref, res.spikes, f"simulator (batch {batch}) vs reference")


@pytest.mark.lava
@settings(max_examples=examples(4), deadline=None)
@given(sigma_delta_networks(max_layers=2))
def test_lava_lowering_equals_simulator_on_random_sigma_delta_networks(case):
    from snncompile.backends.lava.run import run_lava
    graph, x = case
    _all_equal(Simulator(graph).run(x).spikes, run_lava(graph, x).spikes,
               "our Lava lowering vs simulator")


def test_verify_names_the_first_graded_divergence(monkeypatch):
    """A tampered simulator value is caught: verify names layer, neuron, step and each
    side's graded value (and does not re-run anything for u/v, which these neurons lack)."""
    from snncompile.build import Build
    from snncompile.target import load_target
    from snncompile.verify.compare import verify

    graph = _hand_graph(bias=3)
    x = np.random.default_rng(11).integers(0, 256, (3, 7, 5))
    build = Build(graph=graph, float_graph=None, target=load_target("loihi2"), report={})
    assert verify(build, x, backends=("reference", "sim")).equivalent
    real = Simulator.__dict__["run"]

    def tampered(self, inputs, **kw):
        res = real(self, inputs, **kw)
        res.spikes["sd1"][1, 4, 2] += 5
        return res
    monkeypatch.setattr(Simulator, "run", tampered)
    rep = verify(build, x, backends=("reference", "sim"))
    d = rep.first_divergence
    assert not rep.equivalent and rep.mismatches == 1
    assert (d["layer"], d["sample"], d["step"], d["neuron"]) == ("sd1", 1, 4, 2)
    assert d["sides"]["sim"]["spike"] - d["sides"]["reference"]["spike"] == 5
    assert "graded spike" in rep.text()


def test_compile_input_bits_option(tmp_path, capsys):
    """`compile --input-bits` sets the width of an SDNN network's integer frames; it is
    refused for other formats and outside [1, 16], in one line each."""
    from snncompile.cli import main
    from snncompile.ir.graph import Graph as G

    path = _conv_net(tmp_path / "ib.net")
    assert main(["compile", str(path), "-o", str(tmp_path / "b"), "--input-bits", "12",
                 "--quiet"]) == 0
    assert G.load(tmp_path / "b").input_node().bits == 12
    capsys.readouterr()
    for argv, match in (([str(path), "--input-bits", "20"], "outside [1, 16]"),
                        ([str(tmp_path / "x.nir"), "--input-bits", "4"], "set only for netx"),
                        ([str(tmp_path / "x.pt"), "--input-signed"], "set only for netx")):
        assert main(["compile", *argv, "-o", str(tmp_path / "c")]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and match in err, err
    assert not (tmp_path / "c").exists()


@pytest.mark.lava
def test_netx_backend_failure_is_one_line_and_tip(tmp_path, capsys):
    """netx 0.6.0 cannot load a file with a `messageBits` entry: `verify --backends
    sim,netx` says so in one line instead of failing inside Lava's workers; a repeated
    backend is refused; without 'netx', verify of a netx build suggests it."""
    from snncompile.cli import main
    from snncompile.data import save_inputs

    path = _conv_net(tmp_path / "m.net")
    add_dataset(path, "layer/1/neuron/messageBits", 16)
    build = tmp_path / "m.build"
    assert main(["compile", str(path), "-o", str(build), "--quiet"]) == 0
    save_inputs(tmp_path / "x.npz", np.zeros((1, 4, 2, 8, 8), np.int64), None)
    capsys.readouterr()
    rc = main(["verify", str(build), "--inputs", str(tmp_path / "x.npz"), "--backends",
               "sim,netx"])
    err = capsys.readouterr().err.strip()
    assert rc != 0 and len(err.splitlines()) == 1 and "messageBits" in err, err
    plain = tmp_path / "plain.build"
    assert main(["compile", str(_conv_net(tmp_path / "p.net")), "-o", str(plain),
                 "--quiet"]) == 0
    capsys.readouterr()
    rc = main(["verify", str(plain), "--inputs", str(tmp_path / "x.npz"), "--backends",
               "sim,netx,sim"])
    assert rc == 2 and "two different" in capsys.readouterr().err
    assert main(["verify", str(plain), "--inputs", str(tmp_path / "x.npz"), "--backends",
                 "reference,sim"]) == 0
    assert "add 'netx' to --backends" in capsys.readouterr().out
