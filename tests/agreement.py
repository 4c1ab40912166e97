"""Backend agreement checks on a compiled build with a co-processor partition: every spike
and every boundary (co-processor) value, shared by the attention test files."""
import json

import numpy as np

from snncompile.backends.reference import reference_run
from snncompile.backends.sim import Simulator


def sim_equals_reference(build, x):
    """Simulator and reference: the same spikes and boundary values; returns the sim run."""
    sim = Simulator(build.graph).run(x)
    ref = reference_run(build.graph, x)
    assert any(s.any() for s in sim.spikes.values())
    for name, spikes in sim.spikes.items():
        assert np.array_equal(ref[name], spikes), name
    assert sim.boundary
    for name, values in sim.boundary.items():
        assert np.array_equal(ref["@" + name], values), name
    return sim


def lava_equals_simulator(build, x):
    """Lava and the simulator: the same spikes and boundary values."""
    from snncompile.backends.lava.run import run_lava
    sim = Simulator(build.graph).run(x)
    lava = run_lava(build.graph, x)
    for name, spikes in sim.spikes.items():
        assert np.array_equal(lava.spikes[name], spikes), name
    assert sim.boundary
    for name, values in sim.boundary.items():
        assert np.array_equal(lava.boundary[name], values), name


def cli_compile_and_verify(tmp_path, model, cal, test):
    """`compile` (loihi2) then `verify` through the CLI; the verify report must show every
    spike and every co-processor value equal on reference, simulator and Lava. Returns
    compile's stderr."""
    from cli_inprocess import run_cli
    rc, out, err = run_cli("compile", model, "--target", "loihi2", "--calib", cal,
                           "-o", tmp_path / "b", "--quiet")
    assert rc == 0, out + err
    rc, out, verr = run_cli("verify", tmp_path / "b", "--inputs", test,
                            "--json", tmp_path / "v.json")
    report = json.loads((tmp_path / "v.json").read_text())
    assert rc in (0, 4) and rc == report["exit_code"], out + verr
    assert report["equivalent"] and report["boundary"], out
    assert all(v == 0 for r in report["boundary"] for v in r["mismatches"].values())
    assert set(report["backends"]) == {"reference", "sim", "lava"}
    return err
