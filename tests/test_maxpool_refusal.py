"""Max pooling is refused wherever it is met, with the one message naming the alternatives."""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
nir = pytest.importorskip("nir")

from snncompile.errors import UnsupportedError  # noqa: E402
from snncompile.formats.nir.read import import_nir  # noqa: E402
from snncompile.nn.layers import SNN  # noqa: E402

ALTERNATIVES = ("not representable on Loihi", "sumpool2d", "avgpool2d", "stride")


def _assert_refusal(exc_info, where):
    text = str(exc_info.value)
    assert "\n" not in text and where in text
    for word in ALTERNATIVES:
        assert word in text, (word, text)


@pytest.mark.parametrize("kind", ["maxpool2d", "MaxPool2d", "max_pool1d"])
def test_training_config_maxpool_is_refused(kind):
    config = {"input": {"shape": [1, 4, 4]},
              "layers": [{"type": kind, "kernel": 2}, {"type": "flatten"},
                         {"type": "lif", "du": 0.1, "dv": 0.1}]}
    with pytest.raises(UnsupportedError) as exc_info:
        SNN(config)
    _assert_refusal(exc_info, "layer 0")


def test_other_unknown_layer_keeps_the_generic_message():
    config = {"input": {"shape": [4]}, "layers": [{"type": "dropout"}]}
    with pytest.raises(UnsupportedError, match="'dropout' is not supported; supported"):
        SNN(config)


class MaxPool2d:  # nir 1.0.8 has no max-pool node; an exporter's own node class has this name
    input_type = {"input": np.array([1, 4, 4])}
    output_type = {"output": np.array([1, 2, 2])}


def test_nir_maxpool_node_is_refused():
    graph = nir.NIRGraph(
        nodes={"input": nir.Input(input_type=np.array([1, 4, 4])), "pool": MaxPool2d(),
               "output": nir.Output(output_type=np.array([1, 2, 2]))},
        edges=[("input", "pool"), ("pool", "output")], type_check=False)
    with pytest.raises(UnsupportedError) as exc_info:
        import_nir(graph, dt=1e-3)
    _assert_refusal(exc_info, "node 'pool'")


def test_norse_maxpool_is_refused():
    norse = pytest.importorskip("norse.torch")
    from snncompile.frontends.norse_import import import_norse

    model = norse.SequentialState(torch.nn.MaxPool2d(2), torch.nn.Flatten(),
                                  torch.nn.Linear(4, 2, bias=False), norse.LIFCell())
    with pytest.raises(UnsupportedError) as exc_info:
        import_norse(model, torch.zeros(1, 1, 4, 4))
    _assert_refusal(exc_info, "norse layer 0")


def test_nir_file_naming_a_maxpool_node_is_refused(tmp_path):
    """nir.read cannot load such a file (no MaxPool class); the refusal still says why."""
    h5py = pytest.importorskip("h5py")
    from snncompile.errors import InputFileError

    pool = nir.SumPool2d(kernel_size=np.array([2, 2]), stride=np.array([2, 2]),
                         padding=np.array([0, 0]))
    graph = nir.NIRGraph(
        nodes={"input": nir.Input(input_type=np.array([1, 4, 4])), "pool": pool,
               "output": nir.Output(output_type=np.array([1, 2, 2]))},
        edges=[("input", "pool"), ("pool", "output")], type_check=False)
    path = tmp_path / "m.nir"
    nir.write(path, graph)
    with h5py.File(path, "r+") as f:
        del f["node/nodes/pool/type"]
        f["node/nodes/pool/type"] = np.bytes_("MaxPool2d")
    with pytest.raises(UnsupportedError) as exc_info:
        import_nir(path, dt=1e-3)
    _assert_refusal(exc_info, "m.nir: node 'pool'")
    with h5py.File(path, "r+") as f:   # any other unreadable contents: still InputFileError
        del f["node/nodes/pool/type"]
        f["node/nodes/pool/type"] = np.bytes_("NoSuchNode")
    with pytest.raises(InputFileError, match="not a readable NIR file"):
        import_nir(path, dt=1e-3)
