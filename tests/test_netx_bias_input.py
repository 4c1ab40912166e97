"""netx networks whose input is the input layer's bias (lava-dl PilotNet LIF, netx's tinynet
test): the input layer's CUBA neuron is kept as `L0_lif`, driven by an `Input` with
encoding "bias" whose frames are its `bias_mant`, and every backend runs it.

The files are written by lava-dl itself: slayer `cuba.Input` + Conv/Dense blocks exported
with `export_hdf5`, exactly what lava-dl's PilotNet LIF network is made of. The reference
side of the Lava tests is lava-dl's own `netx.hdf5.Network`, run in Lava's bit-accurate
models with each frame written into `net.in_layer.neuron.bias_mant` as lava-dl's netx
tests do (no source connected: netx never wires the input block's port).
"""
from __future__ import annotations

import json

import h5py
import numpy as np
import pytest

import snncompile  # noqa: F401  (installs the Lava import fix)
from snncompile.data import load_inputs, save_inputs
from snncompile.errors import InputFileError, UnsupportedError
from snncompile.formats.netx.read import import_netx, lava_network_kwargs
from snncompile.ir import Flatten, FxConv2d, FxDense, FxLIF, Input, Output
from snncompile.backends.reference import reference_run
from snncompile.backends.sim.simulator import Simulator
from netx_files import add_dataset, export_blocks

torch = pytest.importorskip("torch")
slayer = pytest.importorskip("lava.lib.dl.slayer")

NEURON = {"threshold": 1.25, "current_decay": 0.25, "voltage_decay": 0.03,
          "requires_grad": False}
SHAPE = (2, 8, 8)


def _conv_net(path, seed=0):
    """slayer Input(CUBA neuron) -> Conv -> Flatten -> Dense, as lava-dl exports it."""
    torch.manual_seed(seed)
    blocks = [slayer.block.cuba.Input(NEURON),
              slayer.block.cuba.Conv(NEURON, 2, 4, 3, padding=1, stride=2, weight_scale=3,
                                     weight_norm=False),
              slayer.block.cuba.Flatten(),
              slayer.block.cuba.Dense(NEURON, 4 * 4 * 4, 6, weight_scale=3,
                                      weight_norm=False)]
    export_blocks(blocks, path, (torch.rand(1, *SHAPE, 4) < 0.3).float())
    return path


def _dense_net(path, seed=1):
    """slayer Input(CUBA neuron) over 12 inputs -> Dense 5."""
    torch.manual_seed(seed)
    blocks = [slayer.block.cuba.Input(NEURON),
              slayer.block.cuba.Dense(NEURON, 12, 5, weight_scale=3, weight_norm=False)]
    export_blocks(blocks, path, (torch.rand(1, 12, 4) < 0.3).float())
    return path


def _frames(n, steps, shape=SHAPE, seed=0, lo=-300, hi=700):
    """Random bias frames, each held for all `steps` of its sample."""
    f = np.random.default_rng(seed).integers(lo, hi, (n, 1) + tuple(shape))
    return np.repeat(f, steps, axis=1)


# ------------------------------------------------------------------ import
def test_input_layer_is_kept_as_a_bias_driven_lif(tmp_path):
    graph = import_netx(_conv_net(tmp_path / "conv.net"))
    assert [type(n) for n in graph.nodes()] == [Input, FxLIF, FxConv2d, FxLIF, Flatten,
                                                FxDense, FxLIF, Output]
    inp, lif = graph.input_node(), graph.node("L0_lif")
    assert (inp.encoding, inp.bits, inp.signed, inp.shape) == ("bias", 13, True, SHAPE)
    assert inp.value_range() == (-4096, 4095)
    assert graph.bias_fed() == {"L0_lif"} and graph.depth("L0_lif") == 0
    assert lif.shape == SHAPE and not np.any(lif.bias_mant)   # netx builds it with bias 0
    assert (lif.du, lif.dv, lif.vth) == (1023, 123, 80)       # the file's input neuron
    meta = graph.meta["netx"]
    assert meta["input_layer"] == "bias" and meta["skip_layers"] == 0
    assert meta["input_transform"] == {"weight": 64, "bias": 0}       # netx's defaults
    kw = lava_network_kwargs(graph, 10)
    assert kw["skip_layers"] == 0 and kw["reset_offset"] == 0  # block 0 zeroed at step 1
    # --input-bits widens the frames (still signed); the old behaviour only on request
    assert import_netx(tmp_path / "conv.net", input_bits=16).input_node().value_range() \
        == (-32768, 32767)
    skipped = import_netx(tmp_path / "conv.net", skip_input_layer=True)
    assert skipped.input_node().encoding == "spikes" and "L0_lif" not in skipped
    assert skipped.meta["netx"]["input_neurons_skipped"] == 128


def test_simulator_and_reference_agree_on_bias_frames(tmp_path):
    """The two independent integer implementations, value for value, and the frames really
    drive the network: a strongly negative frame silences the input layer entirely."""
    graph = import_netx(_conv_net(tmp_path / "conv.net"))
    x = _frames(3, 12)
    x[2] = -4096
    sim = Simulator(graph, strict=True).run(x)
    ref = reference_run(graph, x)
    for name in ("L0_lif", "L1_lif", "L3_lif"):
        np.testing.assert_array_equal(sim.spikes[name], ref[name], err_msg=name)
    assert sim.spikes["L0_lif"][:2].sum() > 500 and sim.spikes["L3_lif"][:2].sum() > 5
    assert not sim.spikes["L0_lif"][2].any() and not sim.spikes["L3_lif"][2].any()
    # the frame counts as bias, not as synaptic input: L0's own u stays 0
    state = Simulator(graph).run(x[:1], record_state=True).state
    assert not state["L0_lif"][0].any() and state["L0_lif"][1].any()
    x[0, :, 0, 0, :3] = 0                      # neuron-steps with a zero frame are inactive
    counts = Simulator(graph).run(x).counts["L0_lif"]
    assert counts["active_updates"] == int(np.count_nonzero(x)) == 3 * 12 * 128 - 3 * 12


# ------------------------------------------------------------------ against netx in Lava
@pytest.mark.lava
def test_conv_network_matches_netx_in_lava_value_for_value(tmp_path):
    """Every layer, including the input layer netx itself runs, spike for spike against
    lava-dl's netx Network with the frame in `in_layer.neuron.bias_mant`; and our own Lava
    lowering on two samples back to back (bias_mant set between them)."""
    from snncompile.backends.lava.run import run_lava
    from snncompile.formats.netx.run_lava import run_netx

    path = _conv_net(tmp_path / "conv.net")
    rng = np.random.default_rng(3)
    add_dataset(path, "layer/1/bias", rng.integers(-20, 40, 4))       # per channel
    add_dataset(path, "layer/3/bias", rng.integers(-10, 30, 6))
    graph = import_netx(path)
    x = _frames(2, 10, seed=5)
    ours = Simulator(graph).run(x).spikes
    netx = run_netx(path, graph, x[0])
    assert set(netx) == {"L0_lif", "L1_lif", "L3_lif"}
    for name, spikes in netx.items():
        mism = int(np.count_nonzero(ours[name][0] != spikes))
        assert mism == 0, f"{name}: {mism} spike mismatches against netx in Lava"
    assert netx["L0_lif"].sum() > 200 and netx["L3_lif"].sum() > 3
    lava = run_lava(graph, x).spikes
    for name in ours:
        np.testing.assert_array_equal(lava[name], ours[name], err_msg=name)
    assert ours["L0_lif"][1].sum() != ours["L0_lif"][0].sum()   # the second frame mattered
    # verify's divergence diagnostics read (u, v) back from Lava: same state as ours
    from snncompile.backends.lava.run import lava_state
    u, v = lava_state(graph, x[1], "L0_lif", 4)
    state = Simulator(graph).run(x[1:], record_state=True).state["L0_lif"]
    np.testing.assert_array_equal(u, state[0][0, 4])
    np.testing.assert_array_equal(v, state[1][0, 4])
    assert v.any()


@pytest.mark.lava
def test_cli_verify_four_backends_report_and_energy_count_the_input_layer(tmp_path, capsys):
    """`compile` a bias-input file, `verify --backends reference,sim,lava,netx` with zero
    mismatches, and the report, mapping and energy estimate include L0_lif's neurons."""
    from snncompile.cli import main

    path = _dense_net(tmp_path / "dense.net")
    x = _frames(2, 8, shape=(12,), seed=2, lo=-100, hi=900)
    save_inputs(tmp_path / "x.npz", x)

    def cli(*args):
        rc = main([str(a) for a in args])
        out = capsys.readouterr()
        assert rc == 0, out.out + out.err
        return out.out
    build = tmp_path / "b"
    cli("compile", path, "-o", build, "--calib", tmp_path / "x.npz", "--quiet")
    out = cli("verify", build, "--inputs", tmp_path / "x.npz", "--backends",
              "reference,sim,lava,netx", "--json", tmp_path / "v.json")
    rep = json.loads((tmp_path / "v.json").read_text())
    assert rep["equivalent"], out
    rows = {r["layer"]: r for r in rep["layers"]}
    assert set(rows) == {"L0_lif", "L1_lif"}
    assert all(v == 0 for r in rows.values() for v in r["mismatches"].values())
    assert min(rows["L0_lif"]["spikes"].values()) > 20
    assert rows["L0_lif"]["spikes"]["netx"] == rows["L0_lif"]["spikes"]["reference"]
    compiled = json.loads((build / "report.json").read_text())
    assert compiled["totals"]["neurons"] == 12 + 5
    assert "L0_lif (12 neurons" in (build / "report.md").read_text()
    cli("energy", build, "--inputs", tmp_path / "x.npz", "--json", tmp_path / "e.json")
    energy = json.loads((tmp_path / "e.json").read_text())
    assert energy["per_layer"]["L0_lif"]["neuron_active"] > 0


def test_report_mapping_and_energy_include_the_input_layer(tmp_path):
    """Without Lava: the compile report counts the input layer's neurons, the mapping
    places them on a core and the energy estimate prices their updates."""
    from snncompile.build import Build
    from snncompile.energy.run import energy_report
    from snncompile.pipeline import compile_model

    path = _conv_net(tmp_path / "conv.net")
    x = _frames(3, 6)
    build = compile_model(path, "loihi2", calib=x)
    assert build.report["totals"]["neurons"] == 128 + 64 + 6
    assert build.report["totals"]["layers"] == 3
    md = build.report_md
    assert "bias frames" in md and "L0_lif (128 neurons" in md
    assert "weight 64, bias 0" in md                      # netx's input transform
    mapping = build.report["mapping"]
    assert mapping["layers"]["L0_lif"]["neurons"] == 128, mapping["layers"]
    saved = Build.load(build.save(tmp_path / "b"))
    report, placed = energy_report(saved, x)
    assert placed.layers["L0_lif"]["neurons"] == 128
    assert report.per_layer["L0_lif"]["neuron_active"] > 0
    assert report.events["input"]["spikes"] == 0        # frames are bias, not spikes


def test_export_round_trip_keeps_the_bias_input(tmp_path):
    from snncompile.formats.netx.write import export_netx
    from snncompile.ir.graph import graphs_equal

    graph = import_netx(_conv_net(tmp_path / "conv.net"))
    export_netx(graph, tmp_path / "back.net")
    again = import_netx(tmp_path / "back.net")
    again.meta["source"] = graph.meta["source"]
    assert graphs_equal(graph, again)


# ------------------------------------------------------------------ input files
def test_input_file_format_for_bias_frames(tmp_path):
    graph = import_netx(_dense_net(tmp_path / "dense.net"))
    inp = graph.input_node()
    good = _frames(2, 5, shape=(12,), lo=-4096, hi=4096)
    save_inputs(tmp_path / "good.npz", good)
    x, _ = load_inputs(tmp_path / "good.npz", inp)
    np.testing.assert_array_equal(x, good)
    moved = good.copy()
    moved[1, 3, 7] += 1
    save_inputs(tmp_path / "moved.npz", moved)
    with pytest.raises(InputFileError, match="sample 1 changes its bias frame at step 3"):
        load_inputs(tmp_path / "moved.npz", inp)
    big = good.copy()
    big[0, :, 0] = 4096
    save_inputs(tmp_path / "big.npz", big)
    with pytest.raises(InputFileError, match=r"13-bit signed bias values in \[-4096, 4095\]"):
        load_inputs(tmp_path / "big.npz", inp)


# ------------------------------------------------------------------ refusals
def _one_line(exc_info, *parts):
    text = str(exc_info.value)
    assert len(text.splitlines()) == 1, text
    for part in parts:
        assert part in text, text


def test_forms_netx_offers_that_cannot_be_represented_are_refused(tmp_path):
    path = _dense_net(tmp_path / "dense.net")
    # netx reads the input transform with int(): an array makes it fail
    add_dataset(path, "layer/0/weight", np.arange(12))
    with pytest.raises(UnsupportedError) as exc:
        import_netx(path)
    _one_line(exc, "layer 0 (input)", "input transform 'weight'", "(12,)", "one number")
    # graded spikes out of the input neuron
    path = _dense_net(tmp_path / "graded.net")
    add_dataset(path, "layer/0/neuron/gradedSpike", True)
    with pytest.raises(UnsupportedError) as exc:
        import_netx(path)
    _one_line(exc, "layer 0 (input)", "gradedSpike=True")
    # a 2-axis input layer (netx reverses it to (x, y); we have no such layout)
    path = _dense_net(tmp_path / "twoaxes.net")
    add_dataset(path, "layer/0/shape", np.array([3, 4]))
    with pytest.raises(UnsupportedError) as exc:
        import_netx(path)
    _one_line(exc, "layer 0 (input)", "2 axes [3, 4]")
    # a bias Lava's int16 bias_mant cannot hold
    path = _dense_net(tmp_path / "wide.net")
    add_dataset(path, "layer/1/bias", np.full(5, 40000))
    with pytest.raises(UnsupportedError) as exc:
        import_netx(path)
    _one_line(exc, "layer 1 (dense)", "bias 40000", "int16")
    # skipping asks for an input neuron to skip
    path = tmp_path / "plain.net"
    torch.manual_seed(0)
    export_blocks([slayer.block.cuba.Dense(NEURON, 4, 3, weight_norm=False)], path,
                  (torch.rand(1, 4, 4) < 0.3).float())
    with pytest.raises(UnsupportedError) as exc:
        import_netx(path, skip_input_layer=True)
    _one_line(exc, "skip_input_layer", "'none'")


def test_cli_refusals_are_one_line_exit_2(tmp_path, capsys):
    from snncompile.cli import main

    path = _dense_net(tmp_path / "dense.net")
    with h5py.File(path, "a") as f:
        f["layer/0"].create_dataset("bias", data=np.arange(12))
    assert main(["compile", str(path), "-o", str(tmp_path / "b")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "layer 0 (input): input transform 'bias'" in err
    assert not (tmp_path / "b").exists()
    # frames that move within a sample, given to `run`
    good = _dense_net(tmp_path / "good.net")
    assert main(["compile", str(good), "-o", str(tmp_path / "g"), "--quiet"]) == 0
    x = _frames(2, 4, shape=(12,))
    x[0, 2:] += 1
    save_inputs(tmp_path / "x.npz", x)
    capsys.readouterr()
    assert main(["run", str(tmp_path / "g"), "--inputs", str(tmp_path / "x.npz")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "sample 0 changes its bias frame at step 2" in err


def test_a_bias_input_drives_only_lif_layers():
    """The IR states the rule once (Graph.validate): a bias input feeds FxLIF nodes only."""
    from snncompile.errors import GraphError
    from snncompile.ir import Graph

    bad = Graph.sequential([Input("in", shape=(4,), encoding="bias", bits=13),
                            FxDense("d", weight=np.ones((3, 4), np.int32)),
                            FxLIF("l", shape=(3,), vth=10), Output("out")])
    with pytest.raises(GraphError, match="a bias input .* can only drive FxLIF"):
        bad.validate()
    with pytest.raises(GraphError, match=r"bias input bits \(20\) outside \[2, 16\]"):
        Input("in", shape=(4,), encoding="bias", bits=20)
    good = Graph.sequential([Input("in", shape=(4,), encoding="bias", bits=8),
                             FxLIF("l", shape=(4,), vth=1, bias_exp=6), Output("out")])
    good.validate()
    x = np.repeat(np.array([[[-5, 0, 1, 3]]]), 4, axis=1)
    # v = bias << 6 per step; vth << 6 = 64: 3 and 1 exceed it from the first / second step
    spikes = Simulator(good).run(x).spikes["l"][0]
    np.testing.assert_array_equal(spikes.sum(0), [0, 0, 2, 4])
