"""The simulator against Lava's bit-accurate models (Loihi2SimCfg, fixed_pt) on random
networks: every layer's spikes identical at every step, several samples chained per run."""
import pytest
from hypothesis import HealthCheck, given, settings

from hypothesis_profile import examples

from strategies import assert_lava_equals_simulator, fixed_networks

pytestmark = pytest.mark.lava
SLOW_OK = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow])


@settings(max_examples=examples(30), **SLOW_OK)
@given(fixed_networks(conv=False))
def test_simulator_equals_lava_dense(case):
    assert_lava_equals_simulator(case)


@settings(max_examples=examples(20), **SLOW_OK)
@given(fixed_networks(conv=True, max_layers=2))
def test_simulator_equals_lava_conv(case):
    assert_lava_equals_simulator(case)


@settings(max_examples=examples(8), **SLOW_OK)
@given(fixed_networks(conv=False, delays=True))
def test_simulator_equals_lava_with_synaptic_delays(case):
    assert_lava_equals_simulator(case)
