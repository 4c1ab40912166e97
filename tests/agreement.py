"""Backend agreement checks on a compiled build with a co-processor partition: every spike
and every boundary (co-processor) value, shared by the attention test files."""
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
