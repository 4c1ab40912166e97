"""Co-processor integer ops (snncompile/coproc): hand-computed cases, graph round trip and
costs, ONNX export == numpy, Lava process == numpy in the same time step."""
from __future__ import annotations

import importlib.util
import json
import warnings

import numpy as np
import pytest

from snncompile.coproc import (Accumulate, Add, Concat, Conv2d, CoprocGraph, History, Linear, Mul,
                               OpCounts, ReduceMax, ReduceMean, Relu, Reshape, SigmoidLUT,
                               ValueSpec, Window, make_sigmoid_table)
from snncompile.errors import GraphError

HAS_ONNX = importlib.util.find_spec("onnx") is not None
HAS_LAVA = importlib.util.find_spec("lava") is not None


def _one(op, spec_or_specs, *xs, state=None):
    """Run one op through a one-op graph: xs are (N, *shape) arrays."""
    specs = spec_or_specs if isinstance(spec_or_specs, list) else [spec_or_specs]
    names = list(op.inputs)
    g = CoprocGraph(dict(zip(names, specs)), [op], [op.name])
    out, state = g.run_step(dict(zip(names, xs)), state)
    return out[op.name], state


# ------------------------------------------------------------------ ops by hand
def test_linear_floor_shift_and_clip():
    op = Linear("fc", ("x",), weight=[[1, 2], [-1, 1]], bias=[1, 0], shift=1, out_bits=4)
    x = np.array([[-8, 0],      # acc = [-7, 8]:  -7 >> 1 = -4 (floor, not -3); 8 >> 1 = 4
                  [100, 100],   # acc = [301, 0]: 150 clips to 7 (4 bits: [-8, 7])
                  [-100, -20]])  # acc = [-139, 80]: -70 -> -8; 40 -> 7
    y, _ = _one(op, ValueSpec((2,), 8), x)
    np.testing.assert_array_equal(y, [[-4, 4], [7, 0], [-8, 7]])
    assert y.dtype == np.int8


def test_linear_on_channel_axis_is_a_1x1_conv():
    rng = np.random.default_rng(0)
    w = rng.integers(-128, 128, (3, 4))
    x = rng.integers(-128, 128, (2, 4, 2, 3))
    op = Linear("c1x1", ("x",), weight=w, shift=3, out_bits=12, axis=0)
    y, _ = _one(op, ValueSpec((4, 2, 3), 8), x)
    want = np.clip(np.einsum("oc,nchw->nohw", w, x) >> 3, -2048, 2047)
    np.testing.assert_array_equal(y, want)


def test_conv2d_by_hand():
    # xpad = [[0,0,0,0],[0,1,2,0],[0,3,4,0],[0,0,0,0]]; y[i,j] = xpad[i,j] - xpad[i+1,j+1]
    # acc = [[-1,-2,0],[-3,-3,2],[0,3,4]]; >> 1 (floor) = [[-1,-1,0],[-2,-2,1],[0,1,2]];
    # 2-bit clip [-2, 1]
    op = Conv2d("conv", ("x",), weight=[[[[1, 0], [0, -1]]]], padding=1, shift=1, out_bits=2)
    y, _ = _one(op, ValueSpec((1, 2, 2), 8), np.array([[[[1, 2], [3, 4]]]]))
    np.testing.assert_array_equal(y[0, 0], [[-1, -1, 0], [-2, -2, 1], [0, 1, 1]])


def test_conv2d_matches_loops_with_stride_and_bias():
    rng = np.random.default_rng(1)
    w, b = rng.integers(-128, 128, (3, 2, 3, 2)), rng.integers(-5000, 5000, 3)
    x = rng.integers(-512, 512, (2, 2, 7, 6))
    op = Conv2d("conv", ("x",), weight=w, stride=(2, 1), padding=(1, 0), bias=b, shift=5,
                out_bits=12)
    y, _ = _one(op, ValueSpec((2, 7, 6), 10), x)
    xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (0, 0)))
    want = np.zeros((2, 3, 4, 5), np.int64)
    for n in range(2):
        for o in range(3):
            for i in range(4):
                for j in range(5):
                    acc = int(np.sum(xp[n, :, 2 * i:2 * i + 3, j:j + 2] * w[o])) + int(b[o])
                    want[n, o, i, j] = min(max(acc // 32, -2048), 2047)
    np.testing.assert_array_equal(y, want)


def test_relu_add_mul_concat_reshape():
    s3 = ValueSpec((3,), 8)
    y, _ = _one(Relu("r", ("x",)), s3, np.array([[-5, 0, 7]]))
    np.testing.assert_array_equal(y, [[0, 0, 7]])
    y, _ = _one(Add("a", ("x", "z"), out_bits=8), [s3, s3], np.array([[100, -100, 3]]),
                np.array([[100, -100, -5]]))
    np.testing.assert_array_equal(y, [[127, -128, -2]])
    # -9 >> 2 = -3 (floor of -2.25); 15 >> 2 = 3; 10000 >> 2 = 2500 clips to 127
    y, _ = _one(Mul("m", ("x", "z"), shift=2, out_bits=8), [s3, s3],
                np.array([[-3, 5, 100]]), np.array([[3, 3, 100]]))
    np.testing.assert_array_equal(y, [[-3, 3, 127]])
    # an 8-bit gain: floor(x * g / 256), broadcast over H, W
    g = CoprocGraph({"x": ValueSpec((2, 1, 2), 8), "g": ValueSpec((2, 1, 1), 8, False)},
                    [Mul("y", ("x", "g"), shift=8, out_bits=8)], ["y"])
    out, _ = g.run_step({"x": np.array([[[[-1, 100]], [[50, -50]]]]),
                         "g": np.array([[[[255]], [[128]]]])})
    np.testing.assert_array_equal(out["y"], [[[[-1, 99]], [[25, -25]]]])
    y, _ = _one(Concat("c", ("x", "z"), axis=0), [ValueSpec((1, 2), 8),
                                                  ValueSpec((1, 2), 4, False)],
                np.array([[[1, -2]]]), np.array([[[15, 0]]]))
    np.testing.assert_array_equal(y, [[[1, -2], [15, 0]]])
    y, _ = _one(Reshape("f", ("x",), shape=(4,)), ValueSpec((2, 2), 8),
                np.array([[[1, 2], [3, 4]]]))
    np.testing.assert_array_equal(y, [[1, 2, 3, 4]])


def test_reductions_floor_mean_and_max():
    x = np.array([[[-1, -2], [0, 0]]])
    spec = ValueSpec((2, 2), 8)
    y, _ = _one(ReduceMean("m", ("x",), axes=(0, 1)), spec, x)
    assert y.tolist() == [-1]  # -3 // 4 = -1 (truncation would give 0)
    y, _ = _one(ReduceMean("m", ("x",), axes=1), spec, x)
    assert y.tolist() == [[-2, 0]]  # -3 // 2 = -2
    y, _ = _one(ReduceMean("m", ("x",), axes=0, keepdims=True), spec, x)
    assert y.tolist() == [[[-1, -1]]]  # (-1 + 0) // 2, (-2 + 0) // 2
    y, _ = _one(ReduceMax("m", ("x",), axes=(-1,)), spec, x)
    assert y.tolist() == [[-1, 0]]


def test_sigmoid_lut_by_hand_and_table():
    op = SigmoidLUT("g", ("x",), in_scale_shift=1, table=[0, 10, 20, 30])  # lo=-2, hi=1
    y, _ = _one(op, ValueSpec((8,), 8), np.array([[-100, -3, -1, 0, 1, 2, 3, 100]]))
    # x >> 1 = [-50,-2,-1,0,0,1,1,50] -> clip [-2,1] -> index +2 = [0,0,1,2,2,3,3,3]
    np.testing.assert_array_equal(y, [[0, 0, 10, 20, 20, 30, 30, 30]])
    assert y.dtype == np.uint8
    t = make_sigmoid_table(8, 16.0)
    assert t.dtype == np.uint8 and t.shape == (256,)
    assert t[128] == 128 and t[0] == 0 and t[255] == 255  # v = 0, -128 (8 * 16), 127
    assert t[128 + 16] == 187  # round(256 * sigmoid(1)) = round(187.16)
    assert np.all(np.diff(t.astype(int)) >= 0)


def test_sigmoid_table_of_a_small_scale_warns_of_nothing():
    """A wide table at a small input scale: exp(-v / in_scale) overflows to inf for the
    most negative v, which is a gain of exactly 0, not a RuntimeWarning on stderr (the
    gesture example's compile printed 'overflow encountered in exp')."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        t = make_sigmoid_table(16, 4.0)            # v / in_scale down to -8192
    assert t[0] == 0 and t[2 ** 15] == 128 and t[-1] == 255


def test_window_and_history_carry_state():
    spec = ValueSpec((1,), 8)
    g = CoprocGraph({"x": spec}, [Window("w", ("x",), k=3, out_bits=3),
                                  History("h", ("x",), k=2)], ["w", "h"])
    x = np.array([1, -2, 3, 4]).reshape(1, 4, 1)
    out = g.run({"x": x})
    # sums 1, -1, 2, 5 -> 5 clips to 3 (3 bits)
    np.testing.assert_array_equal(out["w"][0, :, 0], [1, -1, 2, 3])
    np.testing.assert_array_equal(out["h"][0, :, :, 0], [[0, 1], [1, -2], [-2, 3], [3, 4]])
    # stepping by hand with the returned state gives the same; a fresh state is a reset
    state = None
    for t in range(4):
        y, state = g.run_step({"x": x[:, t]}, state)
        assert y["w"][0, 0] == out["w"][0, t]
    assert state["w"].tolist() == [[[3], [4]]]
    y, _ = g.run_step({"x": x[:, 3]}, None)
    assert y["w"].tolist() == [[3]] and y["h"].tolist() == [[[0], [4]]]


def test_accumulate_saturates_and_resets():
    g = CoprocGraph({"x": ValueSpec((2,), 8)}, [Accumulate("s", ("x",), out_bits=8)], ["s"])
    x = np.array([[[100, -100], [20, -20], [20, -20], [-50, 50]]])
    out = g.run({"x": x})["s"][0]
    # 100, 120, 140 -> 127 (saturated state), 77;  -100, -120, -140 -> -128, -78
    np.testing.assert_array_equal(out, [[100, -100], [120, -120], [127, -128], [77, -78]])
    out2 = g.run({"x": x[:, :1]})["s"][0]  # a new run() starts from a reset state
    np.testing.assert_array_equal(out2, [[100, -100]])


# ------------------------------------------------------------------ validation
@pytest.mark.parametrize("make, match", [
    (lambda: Linear("fc9", ("x",), weight=[[200]]), r"fc9: Linear weight values"),
    (lambda: Linear("fc9", ("x",), weight=[[1, 2]], bias=[1, 2]), r"fc9: .*bias shape"),
    (lambda: Mul("m9", ("x",)), r"m9: Mul takes 2 input"),
    (lambda: SigmoidLUT("g9", ("x",), table=np.zeros(5)), r"g9: .*power of two"),
    (lambda: Window("w9", ("x",), k=1), r"w9: Window k \(1\)"),
    (lambda: Linear("fc9", ("x",), weight=[[1]], shift=-1), r"fc9: .*shift \(-1\)"),
])
def test_op_validation_names_the_op(make, match):
    with pytest.raises(GraphError, match=match):
        make()


def test_graph_validation_names_the_op():
    s = {"x": ValueSpec((4,), 8)}
    with pytest.raises(GraphError, match=r"fc: Linear expects 3 features"):
        CoprocGraph(s, [Linear("fc", ("x",), weight=np.ones((2, 3)))], ["fc"])
    with pytest.raises(GraphError, match=r"r: reads undefined value\(s\) \['y'\]"):
        CoprocGraph(s, [Relu("r", ("y",))], ["r"])
    with pytest.raises(GraphError, match=r"x: value name already defined"):
        CoprocGraph(s, [Relu("x", ("x",))], ["x"])
    with pytest.raises(GraphError, match=r"m: Mul the product can reach"):
        CoprocGraph({"x": ValueSpec((4,), 31)}, [Mul("p", ("x", "x"), out_bits=32),
                                                  Mul("m", ("p", "p"))], ["m"])
    with pytest.raises(GraphError, match=r"m: ReduceMean axis 2 out of range"):
        CoprocGraph(s, [ReduceMean("m", ("x",), axes=2)], ["m"])
    g = CoprocGraph(s, [Relu("r", ("x",))], ["r"])
    with pytest.raises(GraphError, match=r"input 'x': values \[-200, 0\] outside"):
        g.run_step({"x": np.array([[-200, 0, 0, 0]])})
    with pytest.raises(GraphError, match=r"input 'x': shape"):
        g.run_step({"x": np.zeros((1, 3), np.int8)})


# ------------------------------------------------------------------ attention-like graphs
C, H, W = 8, 4, 5


def ca_graph(seed=0) -> CoprocGraph:
    """Causal CA: avg + max over (H, W) -> shared MLP C -> 2 -> C -> add -> sigmoid."""
    r = np.random.default_rng(seed)
    w1, w2 = r.integers(-128, 128, (2, C)), r.integers(-128, 128, (C, 2))
    return CoprocGraph({"x": ValueSpec((C, H, W), 8)}, [
        ReduceMean("avg", ("x",), axes=(1, 2)), ReduceMax("mx", ("x",), axes=(1, 2)),
        Linear("fc1a", ("avg",), weight=w1, shift=3, out_bits=12),
        Linear("fc1m", ("mx",), weight=w1, shift=3, out_bits=12),
        Relu("ra", ("fc1a",)), Relu("rm", ("fc1m",)),
        Linear("fc2a", ("ra",), weight=w2, bias=r.integers(-1000, 1000, C), shift=5,
               out_bits=12),
        Linear("fc2m", ("rm",), weight=w2, shift=5, out_bits=12),
        Add("sum", ("fc2a", "fc2m"), out_bits=13),
        SigmoidLUT("gain", ("sum",), in_scale_shift=4, table=make_sigmoid_table(8, 16.0)),
    ], ["gain", "sum"])


def sa_graph(seed=0) -> CoprocGraph:
    """Causal SA: mean + max over channels -> concat -> conv 2->1 k3 pad1 -> sigmoid."""
    r = np.random.default_rng(seed)
    return CoprocGraph({"x": ValueSpec((C, H, W), 10)}, [
        ReduceMean("avg", ("x",), axes=0, keepdims=True),
        ReduceMax("mx", ("x",), axes=0, keepdims=True),
        Concat("cat", ("avg", "mx"), axis=0),
        Conv2d("conv", ("cat",), weight=r.integers(-128, 128, (1, 2, 3, 3)), padding=1,
               shift=6, out_bits=12),
        SigmoidLUT("gain", ("conv",), in_scale_shift=2, table=make_sigmoid_table(10, 64.)),
    ], ["gain"])


def ta_graph(seed=0, k=4) -> CoprocGraph:
    """Causal TA over a window of k steps: per-step avg/max over (C, H, W), the last k of
    each (History), shared MLP k -> 2 -> 1, add, sigmoid; plus a count Window over the
    input and a running (Accumulate) sum of the per-step mean."""
    r = np.random.default_rng(seed)
    w1, w2 = r.integers(-128, 128, (2, k)), r.integers(-128, 128, (1, 2))
    ops = [ReduceMean("a", ("x",), axes=(0, 1, 2), keepdims=True),
           ReduceMax("m", ("x",), axes=(0, 1, 2), keepdims=True),
           Reshape("a1", ("a",), shape=(1,)), Reshape("m1", ("m",), shape=(1,)),
           History("ha", ("a1",), k=k), History("hm", ("m1",), k=k),
           Reshape("ha1", ("ha",), shape=(k,)), Reshape("hm1", ("hm",), shape=(k,))]
    for v in ("a", "m"):
        ops += [Linear(f"l1{v}", (f"h{v}1",), weight=w1, shift=2, out_bits=12),
                Relu(f"r{v}", (f"l1{v}",)),
                Linear(f"l2{v}", (f"r{v}",), weight=w2, shift=4, out_bits=12)]
    ops += [Add("s", ("l2a", "l2m"), out_bits=13),
            SigmoidLUT("gain", ("s",), in_scale_shift=3, table=make_sigmoid_table(8, 16.)),
            Window("count", ("x",), k=3, out_bits=10),
            Accumulate("total", ("a1",), out_bits=10)]
    return CoprocGraph({"x": ValueSpec((C, H, W), 8)}, ops, ["gain", "count", "total"])


def _extreme_inputs(spec: ValueSpec, n: int, rng) -> np.ndarray:
    x = rng.integers(spec.lo, spec.hi + 1, (n,) + spec.shape)
    x[0], x[1] = spec.lo, spec.hi
    x[2] = rng.choice([spec.lo, spec.hi, max(spec.lo, -1), 0], spec.shape)
    return x


def test_graph_round_trip(tmp_path):
    for g in (ca_graph(), sa_graph(), ta_graph()):
        doc, arrays = g.to_dict()
        doc = json.loads(json.dumps(doc))  # the document is plain JSON
        g2 = CoprocGraph.from_dict(doc, arrays)
        g.save(tmp_path / "g.npz")
        g3 = CoprocGraph.load(tmp_path / "g.npz")
        assert g2.summary() == g.summary() == g3.summary()
        x = _extreme_inputs(g.inputs["x"], 4, np.random.default_rng(2))
        xs = {"x": np.stack([x, x[::-1]], axis=1)}  # (N, T=2, ...)
        for other in (g2, g3):
            a, b = g.run(xs), other.run(xs)
            assert all(np.array_equal(a[k], b[k]) for k in a)
    with pytest.raises(GraphError, match="unknown op type 'Softmax'"):
        doc, arrays = ca_graph().to_dict()
        doc["ops"][0]["type"] = "Softmax"
        CoprocGraph.from_dict(doc, arrays)


def test_op_counts_and_io_bytes_by_hand():
    g = ca_graph()
    hw, hid = H * W, 2
    want = OpCounts(
        macs=C                      # avg: one reciprocal multiply per channel
        + 2 * hid * C               # fc1a, fc1m
        + 2 * C * hid,              # fc2a, fc2m
        adds=C * (hw - 1)           # avg sums
        + C                         # fc2a bias
        + C,                        # sum
        compares=C * (hw - 1)       # max
        + 2 * hid,                  # two ReLUs
        lut=C)                      # gain
    assert g.op_counts() == want == OpCounts(72, 168, 156, 8)
    io = g.io_bytes()
    assert io.inp == C * H * W * 8 // 8                  # 160
    assert io.out == C * 8 // 8 + (C * 13 + 7) // 8        # gain 8 + sum 13 bytes = 21
    t = ta_graph(k=4)
    # mean, s, window (k - 1 = 2 adds per element), accumulate
    assert t.op_counts().adds == (C * H * W - 1) + 1 + 2 * C * H * W + 1
    # two 3-deep 8-bit histories of 1 value, a 2-deep 8-bit window, one 10-bit sum
    assert t.state_bytes() == 2 * 3 * 1 + 2 * C * H * W + 2


# ------------------------------------------------------------------ ONNX
@pytest.mark.skipif(not HAS_ONNX, reason="onnx is not installed")
@pytest.mark.parametrize("make", [ca_graph, sa_graph, ta_graph])
def test_onnx_matches_numpy(make, tmp_path):
    import onnx

    from snncompile.coproc.onnx_export import export_onnx, run_onnx

    g = make()
    export_onnx(g, tmp_path / "g.onnx")
    model = onnx.load(str(tmp_path / "g.onnx"))
    onnx.checker.check_model(model, full_check=True)
    ints = {onnx.TensorProto.INT8, onnx.TensorProto.UINT8, onnx.TensorProto.INT32,
            onnx.TensorProto.INT64}
    assert all(i.data_type in ints for i in model.graph.initializer)
    assert all(v.type.tensor_type.elem_type in ints
               for v in list(model.graph.input) + list(model.graph.output))
    rng = np.random.default_rng(3)
    ref = None
    st_np = st_ox = None
    for t in range(5):  # several steps: state (History / Window) carried on both sides
        x = _extreme_inputs(g.inputs["x"], 5, rng)
        want, st_np = g.run_step({"x": x}, st_np)
        from onnx.reference import ReferenceEvaluator
        ref = ref or ReferenceEvaluator(model)
        got, st_ox = run_onnx(ref, g, {"x": x}, st_ox)
        for k in want:
            assert got[k].dtype == want[k].dtype
            np.testing.assert_array_equal(got[k], want[k], err_msg=f"{k} at step {t}")
        for k in st_np:
            np.testing.assert_array_equal(st_ox[k], st_np[k])


def misc_graph(seed=0) -> CoprocGraph:
    """Every remaining lowering path: Linear on axis 0 with bias, strided/padded Conv2d with
    bias, broadcast Mul and Add, Concat, Reshape, means over counts that are no power of 2."""
    r = np.random.default_rng(seed)
    return CoprocGraph({"x": ValueSpec((3, 5, 6), 12), "g": ValueSpec((3, 1, 1), 8, False)}, [
        Linear("pw", ("x",), weight=r.integers(-128, 128, (4, 3)),
               bias=r.integers(-2 ** 31, 2 ** 31, 4), shift=7, out_bits=16, axis=0),
        Conv2d("cv", ("pw",), weight=r.integers(-128, 128, (2, 4, 3, 2)), stride=(2, 1),
               padding=(1, 0), bias=r.integers(-10 ** 6, 10 ** 6, 2), shift=9, out_bits=10),
        Mul("gx", ("x", "g"), shift=8, out_bits=12),
        ReduceMean("m3", ("gx",), axes=0, keepdims=True),
        ReduceMean("m5", ("gx",), axes=(1,), keepdims=True),
        Add("bc", ("m3", "m5"), out_bits=8),
        Reshape("flat", ("bc",), shape=(90,)),
        Concat("cat", ("flat", "flat"), axis=0),
        Relu("r", ("cat",)),
    ], ["cv", "r", "gx"])


@pytest.mark.skipif(not HAS_ONNX, reason="onnx is not installed")
def test_onnx_matches_numpy_misc():
    from snncompile.coproc.onnx_export import build_onnx, run_onnx

    g = misc_graph()
    rng = np.random.default_rng(5)
    xs = {k: _extreme_inputs(s, 6, rng) for k, s in g.inputs.items()}
    want, _ = g.run_step(xs)
    got, _ = run_onnx(build_onnx(g), g, xs)
    assert want["r"].shape == (6, 180) and want["cv"].shape == (6, 2, 3, 5)
    for k in want:
        np.testing.assert_array_equal(got[k], want[k], err_msg=k)


@pytest.mark.skipif(not HAS_ONNX, reason="onnx is not installed")
def test_onnx_floor_shift_of_negatives():
    from snncompile.coproc.onnx_export import build_onnx, run_onnx

    g = CoprocGraph({"x": ValueSpec((7,), 32), "z": ValueSpec((7,), 8)},
                    [Mul("p", ("x", "z"), shift=3, out_bits=32),
                     ReduceMean("m", ("p",), axes=0, keepdims=True)], ["p", "m"])
    x = np.array([[-2 ** 31, -9, -8, -7, -1, 2 ** 31 - 1, 5]])
    z = np.array([[-128, 1, 1, 1, 1, 127, -1]])
    want, _ = g.run_step({"x": x, "z": z})
    got, _ = run_onnx(build_onnx(g), g, {"x": x, "z": z})
    assert want["p"].tolist() == [[2 ** 31 - 1, -2, -1, -1, -1, 2 ** 31 - 1, -1]]
    for k in want:
        np.testing.assert_array_equal(got[k], want[k])


@pytest.mark.skipif(not HAS_ONNX, reason="onnx is not installed")
@pytest.mark.parametrize("rounding", ["floor", "nearest_even"])
def test_onnx_rounding_helpers_on_the_whole_int64_bound(rounding):
    """The exported shift / mean rounding (mask or Mod remainder, exact Div, Clip for the
    round-up bit) equals ops.shift_round / ops.div_round for every |x| < 2**62 the graphs
    allow: values at the bound, ties of both parities, both signs, every shift up to the
    largest each rounding accepts, divisors that are no power of 2."""
    import onnx
    from onnx import helper as h

    from snncompile.coproc.onnx_export import _Builder, evaluator
    from snncompile.coproc.ops import INT64_SAFE_BITS, div_round, shift_round

    top = 2 ** INT64_SAFE_BITS - 1
    rng = np.random.default_rng(7)
    shifts = [1, 2, 3, 8, 13, 31, 40, INT64_SAFE_BITS - 2] + \
        ([INT64_SAFE_BITS - 1, INT64_SAFE_BITS] if rounding == "floor" else [])
    divisors = [3, 5, 6, 7, 64, 100, 1000, 2 ** 20 + 1]
    b = _Builder(onnx)
    outs = [b.shift("x", s, rounding, f"s{s}") for s in shifts] + \
        [b.round_div("x", d, rounding, f"d{d}") for d in divisors]
    t = onnx.TensorProto.INT64
    model = h.make_model(h.make_graph(
        b.nodes, "rounding", [h.make_tensor_value_info("x", t, None)],
        [h.make_tensor_value_info(o, t, None) for o in outs], initializer=b.inits),
        opset_imports=[h.make_opsetid("", 18)])
    ties = [k * 2 ** s + 2 ** (s - 1) for s in shifts[:6] for k in range(-3, 3)]
    x = np.concatenate([rng.integers(-top, top, 3000, endpoint=True),
                        rng.integers(-3000, 3000, 3000), [-top, top, 0, -1, 1], ties,
                        [k * d + d // 2 for d in divisors for k in range(-3, 3)]])
    got = evaluator(model).run(None, {"x": x.astype(np.int64)})
    for s, y in zip(shifts, got):
        np.testing.assert_array_equal(y, shift_round(x, s, rounding), err_msg=f"shift {s}")
    for d, y in zip(divisors, got[len(shifts):]):
        np.testing.assert_array_equal(y, div_round(x, d, rounding), err_msg=f"mean n={d}")


@pytest.mark.skipif(not HAS_ONNX, reason="onnx is not installed")
def test_truncating_div_equals_onnx_reference_div():
    """The evaluator's faster Div is onnx's own function: integer quotients truncated
    toward zero, on both signs of numerator and divisor, exact multiples, int64 extremes
    (the one overflowing case, -2**63 / -1, left out), broadcasting, and float inputs."""
    import onnx
    from onnx import helper as h
    from onnx.reference import ReferenceEvaluator

    from snncompile.coproc.onnx_export import evaluator

    def model(dtype):
        t = onnx.helper.np_dtype_to_tensor_dtype(np.dtype(dtype))
        g = h.make_graph([h.make_node("Div", ["a", "b"], ["y"])], "div",
                         [h.make_tensor_value_info("a", t, None),
                          h.make_tensor_value_info("b", t, None)],
                         [h.make_tensor_value_info("y", t, None)])
        return h.make_model(g, opset_imports=[h.make_opsetid("", 18)])

    rng = np.random.default_rng(11)
    big = 2 ** 63 - 1
    a = np.concatenate([rng.integers(-2 ** 62, 2 ** 62, 4000), rng.integers(-40, 40, 4000),
                        [-big, big, -big - 1, 0, 7, -7, 8, -8, 256 * -3, 256 * 3]])
    b = np.concatenate([rng.integers(1, 300, 4000) * rng.choice([-1, 1], 4000),
                        rng.integers(1, 9, 4000) * rng.choice([-1, 1], 4000),
                        [3, -3, 2, 5, 2, -2, -2, 2, 256, -256]])
    m = model(np.int64)
    ours, theirs = evaluator(m), ReferenceEvaluator(m)
    for x, y in ((a, b), (a, np.array(256)), (a, np.array(-7)), (a[:, None], b[None, :50]),
                 (a[:, None], np.array([[3]])), (a[-3:-2].reshape(()), np.array([3])),
                 (a[-3:-2].reshape(()), np.array(3))):
        got = ours.run(None, {"a": x, "b": y})[0]
        want = theirs.run(None, {"a": x, "b": y})[0]
        assert got.dtype == want.dtype == np.int64 and got.shape == want.shape
        np.testing.assert_array_equal(got, want)
    assert ours.run(None, {"a": np.array([-7, 7, -8]), "b": np.array(2)})[0].tolist() == \
        [-3, 3, -4]                                     # toward zero, not floor
    x, y = a[4000:8000], b[4000:8000]   # small values: int32 and float32 hold them
    for dt in (np.int32, np.float32):
        m, feeds = model(dt), {"a": x.astype(dt), "b": y.astype(dt)}
        np.testing.assert_array_equal(evaluator(m).run(None, feeds)[0],
                                      ReferenceEvaluator(m).run(None, feeds)[0])


# ------------------------------------------------------------------ Lava
def _lava_run(procs, source, n_steps):
    """Run the network; always stop Lava (forced shutdown after a failure)."""
    from lava.magma.core.run_conditions import RunSteps
    from lava.magma.core.run_configs import Loihi2SimCfg
    from lava.proc.dense.models import PyDenseModelBitAcc
    from lava.proc.dense.process import Dense
    from lava.proc.io.sink import PyReceiveModelFixed
    from lava.proc.io.sink import RingBuffer as Sink
    from lava.proc.io.source import PySendModelFixed
    from lava.proc.io.source import RingBuffer as Source

    from snncompile.backends.lava.run import _Net, _session
    from snncompile.backends.lava.coproc import model_map

    models = {Source: PySendModelFixed, Sink: PyReceiveModelFixed, Dense: PyDenseModelBitAcc}
    ex = {p: models[type(p)] for p in procs if type(p) in models}
    ex.update(model_map(procs))
    cfg = Loihi2SimCfg(select_tag="fixed_pt", exception_proc_model_map=ex)
    return _session(), _Net(source, {}, {}, {}, ex, procs), RunSteps(num_steps=n_steps), cfg


@pytest.mark.lava
@pytest.mark.skipif(not HAS_LAVA, reason="lava-nc is not installed")
def test_lava_same_step():
    """Source -> CoprocProcess -> sink: outputs == CoprocGraph.run at the same step, with
    the Window state carried across steps; Source -> Dense -> CoprocProcess -> sink: only
    Dense's one-step delay; a process with reset_interval=3 equals run() on 3-step chunks."""
    from snncompile.backends.lava.run import require_lava

    require_lava()
    from lava.proc.dense.process import Dense
    from lava.proc.io.sink import RingBuffer as Sink
    from lava.proc.io.source import RingBuffer as Source

    from snncompile.backends.lava.coproc import CoprocProcess, check_errors

    rng = np.random.default_rng(4)
    t_len = 7
    g2 = CoprocGraph({"a": ValueSpec((4,), 8), "b": ValueSpec((4,), 8)},
                     [Window("h", ("a",), k=3, out_bits=10),
                      Mul("m", ("h", "b"), shift=2, out_bits=12),
                      SigmoidLUT("g", ("m",), in_scale_shift=2,
                                 table=make_sigmoid_table(8, 16.0))], ["h", "g"])
    g1 = CoprocGraph({"x": ValueSpec((3,), 16)}, [Window("w", ("x",), k=2, out_bits=17)],
                     ["w"])
    a = rng.integers(-128, 128, (4, t_len))
    a[:, 0] = -128
    b = rng.integers(-128, 128, (4, t_len))
    wd = 2 * rng.integers(-4, 5, (3, 4))  # even: exact under Lava's 8-bit mixed weights

    src_a, src_b = Source(data=a.astype(np.int32)), Source(data=b.astype(np.int32))
    p2 = CoprocProcess(g2)
    p3 = CoprocProcess(g2, reset_interval=3, reset_offset=1)  # resets at steps 1, 4, 7
    dense = Dense(weights=wd.astype(np.int32), num_message_bits=8)
    p1 = CoprocProcess(g1)
    sinks = {k: Sink(shape=s, buffer=t_len)
             for k, s in (("h", (4,)), ("g", (4,)), ("h3", (4,)), ("w", (3,)))}
    for p in (p2, p3):
        src_a.s_out.connect(p.in_port("a"))
        src_b.s_out.connect(p.in_port("b"))
    p2.out_port("h").connect(sinks["h"].a_in)
    p2.out_port("g").connect(sinks["g"].a_in)
    p3.out_port("h").connect(sinks["h3"].a_in)
    src_a.s_out.connect(dense.s_in)
    dense.a_out.connect(p1.in_port("x"))
    p1.out_port("w").connect(sinks["w"].a_in)
    procs = [src_a, src_b, p2, p3, dense, p1, *sinks.values()]

    session, net, cond, cfg = _lava_run(procs, src_a, t_len)
    with session as box:
        box.append(net)
        src_a.run(condition=cond, run_cfg=cfg)
        got = {k: np.asarray(s.data.get()).T.astype(np.int64) for k, s in sinks.items()}
        check_errors(procs)

    ref = g2.run({"a": a.T[None], "b": b.T[None]})
    np.testing.assert_array_equal(got["h"], ref["h"][0])  # same step: no shift
    np.testing.assert_array_equal(got["g"], ref["g"][0])
    chunks = [g2.run({"a": a.T[None, s:s + 3], "b": b.T[None, s:s + 3]})["h"][0]
              for s in range(0, t_len, 3)]
    np.testing.assert_array_equal(got["h3"], np.concatenate(chunks))
    ref1 = g1.run({"x": (wd @ a).T[None]})["w"][0]
    np.testing.assert_array_equal(got["w"][0], 0)  # Dense delivers x_t at step t + 1 ...
    np.testing.assert_array_equal(got["w"][1:], ref1[:-1])  # ... and the coproc adds none


@pytest.mark.lava
@pytest.mark.skipif(not HAS_LAVA, reason="lava-nc is not installed")
def test_lava_input_out_of_range_is_reported_not_hung():
    from snncompile.backends.lava.run import require_lava
    from snncompile.errors import BackendError

    require_lava()
    from lava.proc.io.sink import RingBuffer as Sink
    from lava.proc.io.source import RingBuffer as Source

    from snncompile.backends.lava.coproc import CoprocProcess, check_errors

    g = CoprocGraph({"x": ValueSpec((2,), 8)}, [Relu("r", ("x",))], ["r"])
    src = Source(data=np.array([[1, 300, -4], [2, 3, 5]], np.int32))
    proc, sink = CoprocProcess(g, name="attn"), Sink(shape=(2,), buffer=3)
    src.s_out.connect(proc.in_port("x"))
    proc.out_port("r").connect(sink.a_in)
    session, net, cond, cfg = _lava_run([src, proc, sink], src, 3)
    with session as box:
        box.append(net)
        src.run(condition=cond, run_cfg=cfg)
        np.testing.assert_array_equal(np.asarray(sink.data.get()), [[1, 0, 0], [2, 0, 5]])
        with pytest.raises(BackendError, match="attn: CoprocProcess failed at time step 2"):
            check_errors([proc])
