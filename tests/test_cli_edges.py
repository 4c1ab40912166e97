"""What a researcher sees at the command line: progress on stderr, labelled counts, plural
forms, energy notes, and the CLI edges of issue 16 (help text, wrong files, output paths,
third-party import noise, the netx export refusal)."""
from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest

from snncompile.cli import main
from snncompile.energy import estimate_energy
from snncompile.errors import UnsupportedError
from snncompile.ir.graph import Graph
from snncompile.ir.nodes import FxDense, FxLIF, Input, Output
from snncompile.mapping.place import map_graph
from snncompile.report.compile import plural
from snncompile.target import load_target
from snncompile.verify.compare import VerifyReport

PROGRESS = "snncompile: progress:"


@pytest.fixture
def built(tiny_files, tmp_path, capsys):
    ckpt, inputs, _, _ = tiny_files
    build = tmp_path / "tiny.build"
    assert main(["compile", str(ckpt), "--calib", str(inputs), "-o", str(build),
                 "--quiet"]) == 0
    capsys.readouterr()
    return ckpt, inputs, build


def one_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err


# ------------------------------------------------------------------ progress
def test_progress_lines_on_stderr_when_not_a_terminal(tiny_files, tmp_path, capsys,
                                                      monkeypatch):
    monkeypatch.setenv("SNNCOMPILE_PROGRESS_INTERVAL", "0")   # a line per update
    ckpt, inputs, _, _ = tiny_files
    build = tmp_path / "b.build"
    assert main(["compile", str(ckpt), "--calib", str(inputs), "-o", str(build)]) == 0
    cap = capsys.readouterr()
    lines = [ln for ln in cap.err.splitlines() if ln.startswith(PROGRESS)]
    for stage in ("import", "fold pools", "calibration: float model", "quantise",
                  "calibration: simulate", "map onto cores"):
        assert any(stage in ln for ln in lines), (stage, cap.err)
    assert any("compile 7/7 stages (100%)" in ln for ln in lines), cap.err
    assert lines[-1].startswith(f"{PROGRESS} compile done in ")
    assert PROGRESS not in cap.out and "Compile report" in cap.out   # stdout stays clean

    assert main(["verify", str(build), "--inputs", str(inputs), "--backends",
                 "reference,sim"]) == 0
    cap = capsys.readouterr()
    assert f"{PROGRESS} reference 12/12 samples (100%)" in cap.err, cap.err
    assert f"{PROGRESS} simulate 12/12 samples (100%)" in cap.err, cap.err
    assert f"{PROGRESS} float model 12/12 samples" in cap.err, cap.err
    assert PROGRESS not in cap.out and "EQUIVALENT" in cap.out

    assert main(["run", str(build), "--inputs", str(inputs), "-o",
                 str(tmp_path / "o.npz")]) == 0
    assert f"{PROGRESS} simulate 12/12 samples" in capsys.readouterr().err


def test_quiet_silences_progress(tiny_files, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("SNNCOMPILE_PROGRESS_INTERVAL", "0")
    ckpt, inputs, _, _ = tiny_files
    build = tmp_path / "b.build"
    assert main(["compile", str(ckpt), "--calib", str(inputs), "-o", str(build),
                 "--quiet"]) == 0
    cap = capsys.readouterr()
    assert cap.out.strip() == str(build) and PROGRESS not in cap.err, cap.err
    for argv in (["verify", str(build), "--inputs", str(inputs), "--backends",
                  "reference,sim", "--quiet"],
                 ["run", str(build), "--inputs", str(inputs), "-o", str(tmp_path / "o.npz"),
                  "--quiet"],
                 ["energy", str(build), "--inputs", str(inputs), "--quiet"]):
        assert main(argv) == 0
        assert PROGRESS not in capsys.readouterr().err, argv


def test_library_prints_no_lines_unless_the_cli_asks(tiny_files, capsys, monkeypatch):
    """Outside the CLI (and after it returned) a log gets no progress lines."""
    monkeypatch.setenv("SNNCOMPILE_PROGRESS_INTERVAL", "0")
    from snncompile.pipeline import compile_model
    ckpt, inputs, _, tmp = tiny_files
    assert main(["compile", str(ckpt), "--calib", str(inputs), "-o",
                 str(inputs.with_name("c.build"))]) == 0
    assert PROGRESS in capsys.readouterr().err           # the CLI turned lines on ...
    compile_model(ckpt, calib=inputs)
    assert PROGRESS not in capsys.readouterr().err       # ... and off again when it returned


def test_progress_heartbeat_while_one_long_update_runs(capsys, monkeypatch):
    """A stage that takes longer than the interval prints while it runs, then 'done'."""
    import time

    from snncompile import progress
    monkeypatch.setenv("SNNCOMPILE_PROGRESS_INTERVAL", "0.2")
    monkeypatch.setattr(progress, "_LINES", True)
    with progress.stages(["slow stage", "next"], "job") as s:
        s.start("slow stage")
        time.sleep(0.7)
        s.start("next")
    err = capsys.readouterr().err.splitlines()
    assert any(ln.startswith(f"{PROGRESS} job 0/2 stages (0%), slow stage, ") for ln in err), err
    assert err[-1].startswith(f"{PROGRESS} job done in ")


# ------------------------------------------------------------------ labels, plurals
def test_plural_forms():
    assert plural(1, "core") == "1 core" and plural(2, "core") == "2 cores"
    assert plural(0, "chip") == "0 chips" and plural(1024, "neuron") == "1,024 neurons"


def test_labelled_counts_and_ratio_direction(built):
    _, _, build = built
    md = (build / "report.md").read_text()
    assert "1 cores" not in md and "chip(s)" not in md and "packing" not in md
    assert "target loihi2: 1 core on 1 chip, 1 tile; lower bound 1 core (cores used / " \
           "lower bound = 1.00)" in md
    # the layer table and the mapping table name their synapse counts and say what they are
    assert "| synapses | non-zero | kernel weights |" in md
    assert "mapped synapses" in md
    for label in ("- synapses: connections", "- non-zero: connections with a non-zero weight",
                  "- kernel weights: conv only", "mapped synapses: synapses stored on the cores"):
        assert label in md, label
    # one definition, shared with report.json and the HTML report's legend
    import json

    from snncompile.report.compile import SYNAPSE_COUNTS
    rep = json.loads((build / "report.json").read_text())
    assert rep["counts"]["nonzero_synapses"] == SYNAPSE_COUNTS["nonzero"]
    assert rep["counts"]["mapping.layers.*.synapses"] == SYNAPSE_COUNTS["mapped"]
    assert "synapses" in rep["mapping"]["layers"]["lif1"]
    from snncompile.report.html import SYN_TIPS
    assert SYN_TIPS is SYNAPSE_COUNTS


def test_energy_text_carries_its_notes_and_ratio_direction(built, capsys):
    g = Graph.sequential([Input("in", shape=(4,), encoding="spikes", bits=1),
                          FxDense("fc", weight=np.full((2, 4), 3, np.int32)),
                          FxLIF("lif", shape=(2,)), Output("out")])
    spec = load_target("loihi1")
    counts = {"fc": {"synops": 10}, "lif": {"spikes": 3, "neuron_updates": 20},
              "samples": 1, "steps": 10}      # no input spike count, no active updates
    r = estimate_energy(g, map_graph(g, spec), counts, spec)
    assert len(r.notes) >= 2
    text = r.table()
    assert "notes (approximations in these numbers):" in text
    for note in r.notes:
        assert f"  - {note}" in text
    assert "ANN / SNN ops = " in text and "ratio" not in text and "x)" not in text
    assert "1 core, 1 chip; 10 steps per inference, mean over 1 sample" in text


def test_verify_table_says_which_way_boundary_values_go():
    rep = VerifyReport(equivalent=True, mismatches=0, samples=1, steps=2,
                       neurons_compared=0,
                       backends={"reference": {"wall_s": 0.0, "spikes": 0},
                                 "sim": {"wall_s": 0.0, "spikes": 0}},
                       layers=[], first_divergence=None,
                       boundary=[{"channel": "att.g", "values": 8, "mismatches": {"sim": 0}},
                                 {"channel": "att<-lif1", "values": 8,
                                  "mismatches": {"sim": 0}}])
    text = rep.text()
    assert "co-processor output" not in text.splitlines()[4]     # the header line
    assert "neurocore/co-processor boundary" in text
    rows = {ln.split("|")[1].strip(): ln.split("|")[2].strip() for ln in text.splitlines()
            if ln.startswith("| att")}
    assert rows == {"att.g": "out of co-processor", "att<-lif1": "into co-processor"}


# ------------------------------------------------------------------ CLI edges
def test_compile_help_has_the_input_format_below(capsys):
    with pytest.raises(SystemExit):
        main(["compile", "--help"])
    out = capsys.readouterr().out
    below = out[out.index("(.npz, see below"):]
    assert "Input files are .npz archives with 'inputs'" in below
    assert "(samples, steps, *input_shape)" in below and "'labels'" in below


def test_run_on_a_model_file_says_compile_it_first(built, capsys):
    ckpt, inputs, _ = built
    for cmd in ("run", "verify", "energy"):
        assert main([cmd, str(ckpt), "--inputs", str(inputs)]) == 2
        err = one_line(capsys)
        assert "is a model file, not a build directory; compile it first: snncompile " \
               f"compile {ckpt} --calib" in err, err
        assert "not found" not in err
    assert main(["export", str(ckpt), "--format", "nir", "-o", str(ckpt) + ".nir"]) == 2
    assert "is a model file" in one_line(capsys)


def test_bad_calib_and_inputs_paths_name_the_option(built, tmp_path, capsys):
    ckpt, inputs, build = built
    assert main(["compile", str(ckpt), "--calib", str(tmp_path / "nope.npz"), "-o",
                 str(tmp_path / "x.build")]) == 2
    err = one_line(capsys)
    assert err.startswith(f"snncompile: error: --calib {tmp_path / 'nope.npz'}: "), err
    bad = tmp_path / "bad.npz"
    np.savez(bad, wrong=np.zeros(3))
    assert main(["compile", str(ckpt), "--calib", str(bad), "-o",
                 str(tmp_path / "x.build")]) == 2
    assert "--calib " in one_line(capsys)
    assert not (tmp_path / "x.build").exists()
    assert main(["run", str(build), "--inputs", str(tmp_path / "nope.npz")]) == 2
    assert f"--inputs {tmp_path / 'nope.npz'}: not found" in one_line(capsys)


@pytest.mark.parametrize("fmt,name", [("nir", "conv.txt"), ("nir", "conv.net"),
                                      ("netx", "conv.txt"), ("netx", "conv.nir"),
                                      ("netx", "conv")])
def test_export_extension_must_match_the_format(built, tmp_path, capsys, fmt, name):
    _, _, build = built
    dest = tmp_path / name
    assert main(["export", str(build), "--format", fmt, "-o", str(dest)]) == 2
    err = one_line(capsys)
    assert f"-o {dest}: a {fmt} export must be written to a ." in err, err
    assert not dest.exists()


def test_export_nir_with_the_right_extension_works(built, tmp_path, capsys):
    _, _, build = built
    assert main(["export", str(build), "--format", "nir", "-o", str(tmp_path / "t.nir")]) == 0
    assert (tmp_path / "t.nir").stat().st_size > 0


def test_run_writes_beside_the_inputs_not_into_the_build(built, tmp_path, capsys):
    _, inputs, build = built
    before = sorted(p.relative_to(build) for p in build.rglob("*"))
    assert main(["run", str(build), "--inputs", str(inputs)]) == 0
    out = capsys.readouterr().out
    dest = inputs.with_name("inputs.tiny.sim.npz")
    assert f"wrote {dest} (output_spikes, predictions)" in out
    with np.load(dest) as d:
        assert d["predictions"].shape == (12,)
    assert sorted(p.relative_to(build) for p in build.rglob("*")) == before
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    assert "beside the inputs file" in capsys.readouterr().out


def test_netx_export_refusal_says_which_models_can():
    g = Graph.sequential([Input("in", shape=(4,), encoding="spikes", bits=1),
                          FxDense("fc", weight=np.array([[100, -60, 4, 2], [8, 6, -4, 2]],
                                                        np.int32), weight_exp=4),
                          FxLIF("lif", shape=(2,)), Output("out")])
    from snncompile.formats.netx.write import export_netx
    with pytest.raises(UnsupportedError) as exc:
        export_netx(g, "/nonexistent-dir/never.net")
    msg = str(exc.value)
    assert msg.startswith("fc: effective weights (8-bit mantissas x 2**4) span [-960, 1600]")
    assert "within [-256, 254] (mixed signs)" in msg and "weight_exp <= 0" in msg


# ------------------------------------------------------------------ third-party noise
def test_import_quietly_drops_only_the_known_lines(tmp_path, monkeypatch, capsys):
    (tmp_path / "noisy_mod.py").write_text(textwrap.dedent("""\
        print("WARNING: Prophesee Dataset Toolbox could not be found!")
        print("         Only Prophesee DVS demo will not run properly.")
        print("         Please install it from https://github.com/prophesee-ai/prophesee-automotive-dataset-toolbox")
        print("our own line stays")
        import logging
        logging.getLogger("torch.utils.cpp_extension").warning(
            "No CUDA runtime is found, using CUDA_HOME='/usr/local'")
        logging.getLogger("torch.utils.cpp_extension").warning("another warning stays")
        """))
    monkeypatch.syspath_prepend(str(tmp_path))
    from snncompile.third_party import import_quietly
    mod = import_quietly("noisy_mod")
    assert mod.__name__ == "noisy_mod"
    cap = capsys.readouterr()
    assert cap.out == "our own line stays\n"
    assert "No CUDA runtime" not in cap.err and "another warning stays" in cap.err


@pytest.mark.slow
def test_lava_dl_import_is_quiet_in_a_fresh_process():
    code = ("import snncompile\nfrom snncompile.third_party import import_quietly\n"
            "import_quietly('lava.lib.dl.netx.hdf5')\nprint('imported')\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "imported\n"
    assert "Prophesee" not in proc.stderr and "No CUDA runtime" not in proc.stderr
