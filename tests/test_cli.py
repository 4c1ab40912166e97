"""End to end through the command line on a tiny conv+dense model, and the errors a user
can cause: one line on stderr, non-zero exit, no traceback, nothing half-written."""
import json
import os
import pickle
import subprocess
import sys

import numpy as np
import pytest
import torch

from snncompile.cli import main
from snncompile.data import save_inputs
from cli_inprocess import run_cli


def run_entry_point(*args):
    """The real `python -m snncompile.cli` (the process boundary)."""
    proc = subprocess.run([sys.executable, "-m", "snncompile.cli", *map(str, args)],
                          capture_output=True, text=True, timeout=300)
    return proc.returncode, proc.stdout, proc.stderr


def one_line_error(capsys, argv, match):
    rc = main([str(a) for a in argv])
    err = capsys.readouterr().err.strip()
    assert rc != 0, err
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    assert match in err, err
    return err


def test_compile_run_verify_reference_and_sim(tiny_files, tmp_path, capsys):
    ckpt, inputs, x, y = tiny_files
    build = tmp_path / "tiny.build"
    assert main(["compile", str(ckpt), "--calib", str(inputs), "-o", str(build)]) == 0
    out = capsys.readouterr().out
    assert "Compile report" in out and "conv1" in out and "w_exp" in out
    for f in ("manifest.json", "graph.json", "arrays.npz", "float/graph.json", "report.md",
              "report.json", "target.toml"):
        assert (build / f).is_file(), f
    rep = json.loads((build / "report.json").read_text())
    assert rep["totals"]["neurons"] == 3 * 6 * 6 + 4 and rep["target"] == "loihi2"
    assert [q["layer"] for q in rep["quantization"]] == ["lif1", "lif2"]

    assert main(["run", str(build), "--inputs", str(inputs), "-o", str(tmp_path / "o.npz")]) == 0
    with np.load(tmp_path / "o.npz") as d:
        assert d["output_spikes"].shape == (12, 10, 4) and d["predictions"].shape == (12,)

    js = tmp_path / "v.json"
    assert main(["verify", str(build), "--inputs", str(inputs), "--backends",
                 "reference,sim", "--json", str(js)]) == 0
    report = json.loads(js.read_text())
    for key in ("equivalent", "mismatches", "samples", "steps", "neurons_compared",
                "backends", "first_divergence", "accuracy"):
        assert key in report
    assert report["equivalent"] and report["mismatches"] == 0 and report["samples"] == 12
    assert report["neurons_compared"] == (108 + 4) * 12 * 10
    assert set(report["accuracy"]) >= {"float", "compiled"}


def test_compile_is_deterministic(tiny_files, tmp_path):
    ckpt, inputs, _, _ = tiny_files
    for d in ("a", "b"):
        assert main(["compile", str(ckpt), "--calib", str(inputs), "-o", str(tmp_path / d),
                     "--quiet"]) == 0
    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*")
                   if p.is_file())
    assert files and all((tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes()
                         for f in files)


class Evil:
    def __reduce__(self):
        return (os.system, ("touch PWNED",))


def test_pickled_checkpoint_with_code_is_refused(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    bad = tmp_path / "evil.pt"
    torch.save({"format": "snncompile-checkpoint", "version": 1, "payload": Evil()}, bad)
    one_line_error(capsys, ["compile", bad, "--no-calib", "-o", tmp_path / "b"],
                   "refused to load")
    assert not (tmp_path / "PWNED").exists() and not (tmp_path / "b").exists()
    raw = tmp_path / "raw.pt"
    raw.write_bytes(pickle.dumps(Evil()))
    one_line_error(capsys, ["compile", raw, "--no-calib", "-o", tmp_path / "b"], "raw.pt")
    assert not (tmp_path / "PWNED").exists()


def test_bad_inputs_are_one_line_errors(tiny_files, tmp_path, capsys):
    ckpt, inputs, x, y = tiny_files
    build = tmp_path / "b"
    assert main(["compile", str(ckpt), "--calib", str(inputs), "-o", str(build), "--quiet"]) == 0
    capsys.readouterr()
    one_line_error(capsys, ["compile", tmp_path / "missing.pt", "--no-calib", "-o",
                            tmp_path / "c"],
                   "missing.pt: checkpoint not found")
    trunc = tmp_path / "trunc.pt"
    trunc.write_bytes(ckpt.read_bytes()[:200])
    one_line_error(capsys, ["compile", trunc, "--no-calib", "-o", tmp_path / "c"],
                   "trunc.pt: corrupt")
    assert not (tmp_path / "c").exists()
    wrong = tmp_path / "wrong.npz"
    save_inputs(wrong, x[:, :, :, :5])
    one_line_error(capsys, ["run", build, "--inputs", wrong], "network expects (samples, "
                   "steps, 1, 6, 6)")
    graded = tmp_path / "graded.npz"
    save_inputs(graded, x * 3)
    one_line_error(capsys, ["run", build, "--inputs", graded], "takes spikes in [0, 1]")
    floats = tmp_path / "floats.npz"
    np.savez(floats, inputs=x.astype(np.float32))
    one_line_error(capsys, ["run", build, "--inputs", floats], "must hold integers")
    corrupt = tmp_path / "corrupt.npz"
    corrupt.write_bytes(b"PK\x03\x04garbage")
    one_line_error(capsys, ["verify", build, "--inputs", corrupt], "corrupt.npz: corrupt")
    one_line_error(capsys, ["run", tmp_path / "nobuild", "--inputs", inputs],
                   "build directory not found")
    (build / "arrays.npz").write_bytes(b"tampered")
    one_line_error(capsys, ["run", build, "--inputs", inputs], "checksum mismatch")
    one_line_error(capsys, ["compile", ckpt, "--target", "loihi9", "--calib", inputs, "-o",
                            tmp_path / "d"],
                   "unknown target 'loihi9'; built-in targets: hala-point, loihi1")


def test_unsupported_layer_lists_supported(tmp_path, capsys):
    torch.save({"format": "snncompile-checkpoint", "version": 1,
                "config": {"input": {"shape": [4]},
                           "layers": [{"type": "lstm"}, {"type": "lif", "du": 0, "dv": 0}]},
                "state_dict": {}}, tmp_path / "m.pt")
    err = one_line_error(capsys, ["compile", tmp_path / "m.pt", "--no-calib", "-o",
                                  tmp_path / "b"],
                         "type 'lstm' is not supported; supported: dense, conv2d")
    assert "lif" in err


def test_help_explains_every_command():
    for cmd in ("compile", "run", "verify"):
        rc, out, _ = run_entry_point(cmd, "--help")
        assert rc == 0 and "usage: snncompile " + cmd in out and "npz" in out.lower() or \
            "build directory" in out


@pytest.mark.lava
def test_verify_all_three_backends_through_the_cli(tiny_files, tmp_path):
    ckpt, inputs, x, y = tiny_files
    build = tmp_path / "b"
    rc, out, err = run_cli("compile", ckpt, "--calib", inputs, "-o", build, "--quiet")
    assert rc == 0, err
    rc, out, err = run_cli("verify", build, "--inputs", inputs, "--json", tmp_path / "v.json")
    assert rc == 0, out + err
    report = json.loads((tmp_path / "v.json").read_text())
    assert report["equivalent"] and set(report["backends"]) == {"reference", "sim", "lava"}
    assert report["backends"]["lava"]["spikes"] == report["backends"]["sim"]["spikes"] > 0
    rc, out, err = run_cli("run", build, "--inputs", inputs, "--backend", "lava",
                           "-o", tmp_path / "lava.npz")
    assert rc == 0, err
    rc, out, err = run_cli("run", build, "--inputs", inputs, "-o", tmp_path / "sim.npz")
    assert rc == 0, err
    with np.load(tmp_path / "lava.npz") as a, np.load(tmp_path / "sim.npz") as b:
        assert np.array_equal(a["output_spikes"], b["output_spikes"])
        assert np.array_equal(a["predictions"], b["predictions"])


def test_energy_command_json_plot_and_breakdown(tiny_files, tmp_path, capsys):
    ckpt, inputs, x, y = tiny_files
    build = tmp_path / "b"
    assert main(["compile", str(ckpt), "--calib", str(inputs), "-o", str(build), "--quiet"]) == 0
    rep = json.loads((build / "report.json").read_text())
    assert rep["mapping"]["cores"] >= 1 and (build / "mapping.json").is_file()
    assert main(["energy", str(build), "--inputs", str(inputs), "--json",
                 str(tmp_path / "e.json"), "--plot", str(tmp_path / "e.png")]) == 0
    out = capsys.readouterr().out
    assert "energy per inference" in out and "ANN comparison" in out
    e = json.loads((tmp_path / "e.json").read_text())
    for key in ("energy_per_inference_j", "dynamic_j", "static_j", "latency_per_step_s",
                "cores", "chips", "per_layer"):
        assert key in e
    layers_total = sum(sum(v.values()) for v in e["per_layer"].values())
    assert layers_total == pytest.approx(e["energy_per_inference_j"], rel=1e-9)
    assert e["dynamic_j"] + e["static_j"] == pytest.approx(e["energy_per_inference_j"])
    assert (tmp_path / "e.png").read_bytes()[:4] == b"\x89PNG"


def test_energy_backend_both_runs_sanafe(tiny_files, tmp_path, capsys):
    pytest.importorskip("sanafe")
    ckpt, inputs, x, y = tiny_files
    build = tmp_path / "b"
    assert main(["compile", str(ckpt), "--calib", str(inputs), "-o", str(build), "--quiet"]) == 0
    assert main(["energy", str(build), "--inputs", str(inputs), "--backend", "both",
                 "--sanafe-samples", "2", "--json", str(tmp_path / "e.json")]) == 0
    out = capsys.readouterr().out
    assert "energy per inference" in out and "SANA-FE backend" in out
    sf = json.loads((tmp_path / "e.json").read_text())["sanafe"]
    assert sf["dynamic_j"] > 0 and sf["latency_per_step_s"] > 0 and sf["samples"] == 2


def test_network_too_large_names_layer_resource_and_limit(tiny_files, tmp_path, capsys):
    small = tmp_path / "small.toml"
    small.write_text('name = "small"\nbase = "loihi2"\n[limits]\nneurons = 8\n'
                     'input_axons = 8\n')
    one_line_error(capsys, ["compile", tiny_files[0], "--target", small, "--calib",
                            tiny_files[1], "-o", tmp_path / "b"],
                   "input axons")
    assert not (tmp_path / "b").exists()


def test_export_nir_round_trips_and_netx_refusal_is_one_line(tiny_files, tmp_path, capsys):
    from snncompile.formats.nir.read import import_nir
    from snncompile.backends.float_model import run_float

    ckpt, inputs, x, y = tiny_files
    build = tmp_path / "b"
    assert main(["compile", str(ckpt), "--calib", str(inputs), "-o", str(build),
                 "--quiet"]) == 0
    assert main(["export", str(build), "--format", "nir", "-o", str(tmp_path / "m.nir")]) == 0
    from snncompile.build import Build
    original = Build.load(build).float_graph
    back = import_nir(tmp_path / "m.nir")
    a, b = run_float(original, x), run_float(back, x)
    assert [np.array_equal(a[k], b[k2]) for k, k2 in zip(a, b)] == [True, True]
    # the quantiser's weight exponents and graded conv are outside netx: refused, no file
    err = one_line_error(capsys, ["export", build, "--format", "netx", "-o",
                                  tmp_path / "m.net"], "netx")
    assert not (tmp_path / "m.net").exists(), err


@pytest.mark.parametrize("argv, match", [
    (["run", "B", "--inputs", "x.npz", "--limit", "0"], "--limit: 0 must be at least 1"),
    (["verify", "B", "--inputs", "x.npz", "--limit", "-5"], "--limit: -5 must be at least 1"),
    (["compile", "m.pt", "-o", "B", "--calib-samples", "0"], "--calib-samples: 0 must be"),
    (["compile", "m.pt", "-o", "B", "--chips", "two"], "--chips: 'two' is not an integer"),
    (["export", "B", "--format", "nir", "-o", "m.nir", "--dt", "-1"], "--dt: -1.0 must be"),
])
def test_out_of_range_options_are_usage_errors(argv, match, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2 and match in capsys.readouterr().err
