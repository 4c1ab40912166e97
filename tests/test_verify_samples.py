"""How many samples each backend of `verify` compared: the Lava backends run the first
`--lava-samples` (default: what Lava's estimated rate fits in a budget), the others all;
the report (text, JSON, stderr) names every count, and mismatches and the first divergence
are counted on the samples each backend ran (a fault in a sample Lava did not run is still
found by the simulator against the reference)."""
import json

import numpy as np
import pytest

from snncompile.cli import main
from snncompile.backends.sim import simulator as sim_module
from snncompile.verify import compare as V


@pytest.fixture
def tiny_build(tiny_files, tmp_path):
    ckpt, inputs, x, _ = tiny_files
    build = tmp_path / "tiny.build"
    assert main(["compile", str(ckpt), "--calib", str(inputs), "-o", str(build),
                 "--quiet"]) == 0
    return build, inputs, x


def _flip_one_spike(monkeypatch, sample, layer="lif1"):
    """Fault injection: the real simulator, with one spike of `layer` flipped in `sample`
    of a batch (the re-run of one sample that explains a divergence is left alone)."""
    real = sim_module.Simulator.run
    where = {}

    def run(self, inputs, *a, **k):
        res = real(self, inputs, *a, **k)
        if len(inputs) > sample and not k.get("record_state"):
            s = res.spikes[layer]
            flat = s[sample].reshape(s.shape[1], -1)
            step, neuron = 3, int(np.argmax(flat[3] == 0))
            flat[step, neuron] = ~flat[step, neuron]
            where.update(step=step, neuron=neuron)
        return res
    monkeypatch.setattr(sim_module.Simulator, "run", run)
    return where


def test_fault_in_a_late_sample_is_found_by_sim_against_reference(tiny_build, monkeypatch):
    build, _, x = tiny_build
    from snncompile.build import Build
    b = Build.load(build)
    where = _flip_one_spike(monkeypatch, sample=7)
    rep = V.verify(b, x, backends=("reference", "sim"), lava_samples=1)
    assert not rep.equivalent and rep.mismatches == 1
    assert rep.backends["sim"]["samples"] == rep.backends["reference"]["samples"] == len(x)
    assert rep.lava_samples is None and rep.lava_note() is None    # no Lava backend ran
    d = rep.first_divergence
    assert (d["layer"], d["sample"], d["step"], d["neuron"]) == ("lif1", 7, where["step"],
                                                                 where["neuron"])
    assert "samples reference 12, sim 12" in rep.summary()[0]


def test_default_lava_samples_follows_the_network_size(tiny_build):
    from snncompile.build import Build
    g = Build.load(tiny_build[0]).graph
    import sys
    from pathlib import Path
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
    from bench_simulator import network
    big = network()        # 784-2048-2048-1024: about 0.13 s per sample at T = 100
    per_tiny, per_big = V.lava_seconds_per_sample(g, 10), V.lava_seconds_per_sample(big, 100)
    assert 0 < per_tiny < per_big
    assert V.default_lava_samples(big, 100) == int((V.LAVA_BUDGET_S - V.LAVA_SETUP_S)
                                                   // per_big)
    assert V.default_lava_samples(big, 100, budget_s=1.0) == 1     # never fewer than one
    assert V.default_lava_samples(g, 10) > V.default_lava_samples(big, 100)


def test_lava_samples_flag_is_validated(tiny_build, capsys):
    build, inputs, _ = tiny_build
    with pytest.raises(SystemExit) as e:
        main(["verify", str(build), "--inputs", str(inputs), "--lava-samples", "0"])
    assert e.value.code == 2
    assert "--lava-samples" in capsys.readouterr().err


@pytest.mark.lava
def test_fewer_lava_samples_are_visible_and_counted_right(tiny_build, tmp_path, capsys,
                                                           monkeypatch):
    build, inputs, x = tiny_build
    js = tmp_path / "v.json"
    # the real backends agree; the fault sits in sample 5, which Lava does not run
    where = _flip_one_spike(monkeypatch, sample=5)
    rc = main(["verify", str(build), "--inputs", str(inputs), "--backends",
               "reference,sim,lava", "--lava-samples", "2", "--json", str(js)])
    cap = capsys.readouterr()
    assert rc & V.EXIT_DISAGREE, cap.out
    doc = json.loads(js.read_text())
    counts = {b: v["samples"] for b, v in doc["backends"].items()}
    assert counts == {"reference": 12, "sim": 12, "lava": 2}
    assert doc["samples"] == 12 and doc["mismatches"] == 1
    assert doc["lava_samples"]["asked"] == 12 and doc["lava_samples"]["ran"] == 2
    assert doc["lava_samples"]["default"] is False
    lif1 = next(r for r in doc["layers"] if r["layer"] == "lif1")
    assert lif1["mismatches"] == {"sim": 1, "lava": 0}
    d = doc["first_divergence"]
    assert (d["layer"], d["sample"], d["step"], d["neuron"]) == ("lif1", 5, where["step"],
                                                                 where["neuron"])
    assert set(d["sides"]) == {"reference", "sim"}       # Lava did not run sample 5
    # text: the verdict line names the counts, the table says Lava's
    assert "samples compared: reference 12, sim 12, lava 2" in cap.out
    assert "spikes lava (2 samples)" in cap.out
    # stderr: one line says Lava compared fewer samples, and why
    err = [ln for ln in cap.err.splitlines() if "compared only" in ln]
    assert len(err) == 1 and "lava compared only 2 of 12 samples" in err[0]
    assert "--lava-samples 2" in err[0]


@pytest.mark.lava
def test_default_runs_every_sample_of_a_small_network(tiny_build, capsys):
    build, inputs, _ = tiny_build
    rc = main(["verify", str(build), "--inputs", str(inputs), "--backends", "sim,lava"])
    cap = capsys.readouterr()
    assert rc in (0, V.EXIT_UNFAITHFUL), cap.out
    assert "EQUIVALENT: 0 mismatching" in cap.out
    assert "samples compared: sim 12, lava 12" in cap.out
    assert "compared only" not in cap.err


@pytest.mark.lava
def test_lava_first_compares_and_judges_faithfulness_on_its_samples(tiny_build, capsys):
    build, inputs, _ = tiny_build
    rc = main(["verify", str(build), "--inputs", str(inputs), "--backends", "lava,sim",
               "--lava-samples", "3"])
    cap = capsys.readouterr()
    assert rc in (0, V.EXIT_UNFAITHFUL), cap.out
    assert "samples compared: lava 3, sim 12" in cap.out
    assert "accuracy on 3 labelled samples" in cap.out
    assert "on 3 samples" in cap.out                      # the fidelity table
    assert any("lava compared only 3 of 12" in ln for ln in cap.err.splitlines())
