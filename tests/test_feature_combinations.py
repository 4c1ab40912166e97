"""Issue 12's features together on random graphs: soft reset / >= (neuron options), synapse
bias axons, per-neuron du/dv/vth and recurrent synapses in one network. Each feature has its
own tests; these check that they compose: the integer reference, the simulator (numpy and
compiled kernels) and Lava agree spike for spike."""
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings

from snncompile.backends.reference import reference_run
from snncompile.backends.sim import Simulator

from strategies import assert_lava_equals_simulator, fixed_networks, recurrent_networks
from test_neuron_options import all_backends

FAST = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow])
ALL = dict(neuron_options=True, synapse_bias=True, per_neuron=True)


@settings(max_examples=40, **FAST)
@given(fixed_networks(**ALL))
def test_options_bias_and_per_neuron_params_together(case):
    all_backends(*case)


@settings(max_examples=30, **FAST)
@given(recurrent_networks(**ALL))
def test_recurrent_layers_with_bias_options_and_per_neuron_params(case):
    """Recurrent graphs run on the simulator's numpy path (no compiled recurrent kernel)."""
    graph, x = case
    ref, states = reference_run(graph, x, record_state=True)
    res = Simulator(graph, kernel="numpy").run(x, record_state=True, batch_size=2)
    for name in ref:
        assert np.array_equal(res.spikes[name], ref[name]), name
        assert np.array_equal(res.state[name][1], states[name][1]), name


@pytest.mark.lava
@settings(max_examples=4, **FAST)
@given(fixed_networks(conv=None, max_layers=2, **ALL))
def test_lava_equals_simulator_with_every_option(case):
    assert_lava_equals_simulator(case)


@pytest.mark.lava
@settings(max_examples=3, **FAST)
@given(recurrent_networks(max_layers=2, **ALL))
def test_lava_equals_simulator_recurrent_with_every_option(case):
    assert_lava_equals_simulator(case)
