"""Each fixed-point primitive at its edges, against values worked out by hand from Lava's
bit-accurate models (shared/loihi-fixed-point.md)."""
import numpy as np
import pytest

from snncompile.ir import FxDense, FxLIF, Graph, Input, Output
from snncompile.backends.reference import reference_run
from snncompile.backends.sim import Simulator
from snncompile.backends.sim.fixed import prepare_weights, shift_exp, trunc_decay, wrap, wrap_once
from snncompile.errors import OverflowDetected


def a(*v):
    return np.array(v, dtype=np.int64)


def test_wrap_twos_complement():
    assert wrap(a(2**23 - 1, 2**23, -2**23, -2**23 - 1), 24).tolist() == \
        [2**23 - 1, -2**23, -2**23, 2**23 - 1]
    assert wrap(a(2**31), 32).tolist() == [-2**31]


def test_wrap_once_is_lava_current_wrap():
    h = 2**23
    # u == 2**23 is kept (strict >), u == -2**23 wraps (<=), one correction only
    assert wrap_once(a(h, h + 1, -h, -h + 1, 3 * h), h).tolist() == \
        [h, -h + 1, h, -h + 1, h]


def test_decay_rounds_toward_zero():
    # 5 * 4095 / 4096 = 4.9988 -> 4 ; -5 -> -4 (not -5: no floor for negatives)
    assert trunc_decay(a(5, -5, 1, -1, 0), 4095).tolist() == [4, -4, 0, 0, 0]
    assert trunc_decay(a(4096), 0).tolist() == [0]


def test_shift_exp_negative_is_floor():
    assert shift_exp(a(5, -5, -1), -1).tolist() == [2, -3, -1]
    assert shift_exp(a(5, -5), 2).tolist() == [20, -20]
    assert shift_exp(a(7), 0).tolist() == [7]


@pytest.mark.parametrize("mode,bits,inp,out", [
    ("mixed", 8, [255, 254, 3, -3, -256, -300, 400], [254, 254, 2, -4, -256, -256, 254]),
    ("excitatory", 8, [255, 3, -3, 300], [255, 3, 0, 255]),
    ("inhibitory", 8, [-255, -3, 3, -300], [-255, -3, 0, -255]),
    ("excitatory", 6, [255, 7, 4, 3], [252, 4, 4, 0]),
    ("mixed", 6, [7, -7, 8], [0, -8, 8]),
])
def test_prepare_weights_clip_then_truncate(mode, bits, inp, out):
    assert prepare_weights(a(*inp), mode, bits).tolist() == out


def _one_neuron(du=0, dv=0, vth=10, bias=0, bias_exp=0, w=1, exp=0):
    return Graph.sequential([
        Input("in", shape=(1,), encoding="graded", bits=18),
        FxDense("syn", weight=np.array([[w]], np.int32), weight_exp=exp,
                sign_mode="excitatory" if w >= 0 else "inhibitory", num_message_bits=18),
        FxLIF("lif", shape=(1,), du=du, dv=dv, vth=vth,
              bias_mant=np.array([bias], np.int32), bias_exp=bias_exp),
        Output("out")])


def _trace(graph, values, strict=False):
    x = np.array(values, np.int64).reshape(1, -1, 1)
    res = Simulator(graph, strict=strict).run(x, record_state=True)
    ref, st = reference_run(graph, x, record_state=True)
    u, v = res.state["lif"]
    assert np.array_equal(res.spikes["lif"], ref["lif"])
    assert np.array_equal(u, st["lif"][0]) and np.array_equal(v, st["lif"][1])
    return u[0, :, 0].tolist(), v[0, :, 0].tolist(), res.spikes["lif"][0, :, 0].tolist()


def test_lif_input_shift_threshold_strict_and_reset():
    # a=10 -> u = 640 = vth << 6: not a spike (strictly greater); a=11 -> spike, v reset
    u, v, s = _trace(_one_neuron(du=4095, dv=4095, vth=10), [10, 11, 0])
    assert u == [640, 704, 0] and s == [False, True, False] and v == [640, 0, 0]


def test_du_zero_still_decays_one_4096th():
    u, _, _ = _trace(_one_neuron(du=0, dv=4095, vth=10**5), [100, 0, 0])
    assert u == [6400, 6398, 6396]   # 6400 * 4095 >> 12 = 6398.4 -> 6398


def test_dv_zero_is_no_leak_and_bias_shift():
    _, v, _ = _trace(_one_neuron(du=4095, dv=0, vth=10**5, bias=3, bias_exp=2), [0, 0, 0])
    assert v == [12, 24, 36]         # bias 3 << 2 added to v unshifted by 6


def test_voltage_saturates_negative():
    g = _one_neuron(du=4095, dv=0, vth=10, w=-1)
    u, v, _ = _trace(g, [100_000] * 2)      # u = -6.4M each step; v would reach -12.8M
    assert u == [-6_400_000] * 2 and v == [-6_400_000, -(2**23 - 1)]
    with pytest.raises(OverflowDetected, match="lif: voltage v saturates .* local step 1"):
        _trace(g, [100_000] * 2, strict=True)


def test_current_wraps_once_at_24_bits():
    g = _one_neuron(du=4095, dv=4095, vth=2**17 - 1)
    u, _, s = _trace(g, [2**17 + 100])       # a << 6 = 2**23 + 6400 -> wraps negative
    assert u == [-2**23 + 6400] and s == [False]
    with pytest.raises(OverflowDetected, match="lif: current u wraps"):
        _trace(g, [2**17 + 100], strict=True)


def test_negative_weight_exponent_floors_the_sum():
    u, _, _ = _trace(_one_neuron(du=4095, dv=4095, vth=10**5, w=-3, exp=-1), [1, 0])
    assert u[0] == -2 * 64                  # -3 >> 1 = -2 (floor), then << 6
