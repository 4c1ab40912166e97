import numpy as np
import pytest

from snncompile.errors import QuantizationError, UnsupportedError
from snncompile.ir import LIF, Dense, FxDense, FxLIF, Graph, Input, Output
from snncompile.passes.quantize import quantize
from snncompile.target import load_target

L2 = load_target("loihi2")


def net(w, vth=1.0, bias=0.0, du=0.1, dv=0.1, encoding="spikes", bits=1):
    w = np.asarray(w, np.float32)
    return Graph.sequential([
        Input("in", shape=(w.shape[1],), encoding=encoding, bits=bits),
        Dense("fc", weight=w),
        LIF("lif", shape=(w.shape[0],), du=du, dv=dv, vth=vth,
            bias=np.full(w.shape[0], bias, np.float32)),
        Output("out")])


def test_weights_use_the_mantissa_and_threshold_scales_with_them():
    w = np.array([[0.5, -0.25, 0.125]])
    q, (rep,) = quantize(net(w, vth=1.0), L2, {"lif": {"peak_u": 2.0, "peak_v": 2.0}})
    fx = q.node("fc")
    sigma = rep.scale
    # effective weights w * 2**e equal W * sigma to within half a mantissa step (x2: even)
    assert np.all(np.abs(fx.weight * 2.0 ** fx.weight_exp - w * sigma) <= 2 ** fx.weight_exp)
    assert rep.sign_mode == "mixed" and np.all(fx.weight % 2 == 0)
    assert abs(fx.weight).max() in range(128, 255)  # uses the top bit of the mantissa
    assert q.node("lif").vth == round(sigma)
    # state headroom bound: peak 2.0 * sigma * 64 < 2**23 / 1.5
    assert 2.0 * sigma * 64 <= (2**23 - 1) / 1.5 + 64


def test_excitatory_layers_use_full_8_bits():
    q, (rep,) = quantize(net([[1.0, 0.5]]), L2)
    assert rep.sign_mode == "excitatory" and q.node("fc").weight.max() == 255


def test_decays_follow_loihi_offsets():
    q, (rep,) = quantize(net([[1.0]], du=0.25, dv=0.5), L2)
    lif = q.node("lif")
    assert (lif.du, lif.dv) == (1023, 2048)     # u keeps 4096-(du+1); v keeps 4096-dv
    assert rep.du_eff == 0.25 and rep.dv_eff == 0.5


def test_bias_uses_exponent_when_needed_and_errors_when_impossible():
    q, (rep,) = quantize(net([[1.0]], vth=1.0, bias=0.9), L2,
                         {"lif": {"peak_u": 1.0, "peak_v": 1.0}})
    lif = q.node("lif")
    assert rep.bias_exp > 0 and abs(lif.bias_mant[0]) <= 4095
    assert rep.limited_by == "bias range"
    with pytest.raises(QuantizationError, match="lif: threshold 1.0 rounds to 0 .*bias range"):
        quantize(net([[1.0]], vth=1.0, bias=1e5), L2, {"lif": {"peak_u": 1.0, "peak_v": 1.0}})


@pytest.mark.parametrize("kw,match", [
    ({"du": 1.5}, "lif: du \\(1.5\\) is outside \\[0, 1\\]"),
    ({"vth": float("nan")}, "lif: threshold \\(nan\\)"),
    ({"w": [[np.nan]]}, "fc: weight contains NaN"),
])
def test_out_of_range_parameters_are_errors(kw, match):
    w = kw.pop("w", [[1.0]])
    with pytest.raises(QuantizationError, match=match):
        quantize(net(w, **kw), L2)


def test_graded_input_refused_on_loihi1():
    with pytest.raises(UnsupportedError, match="graded inputs are not supported on target "
                                               "'loihi1'"):
        quantize(net([[1.0]], encoding="graded", bits=4), load_target("loihi1"))


def test_quantised_graph_has_only_fixed_nodes():
    q, _ = quantize(net(np.ones((3, 4))), L2)
    assert q.stage == "fixed"
    assert isinstance(q.node("fc"), FxDense) and isinstance(q.node("lif"), FxLIF)
