import os

import numpy as np
import pytest
import torch
from hypothesis import settings

import hypothesis_profile
from snncompile.data import save_inputs
from snncompile.nn import SNN, save_checkpoint

TINY_CONFIG = {
    "input": {"shape": [1, 6, 6], "encoding": "spikes"},
    "layers": [
        {"type": "conv2d", "out": 3, "kernel": 3, "padding": 1, "name": "conv1"},
        {"type": "lif", "du": 0.2, "dv": 0.1, "vth": 0.5, "bias": True, "name": "lif1"},
        {"type": "sumpool2d", "kernel": 2},
        {"type": "flatten"},
        {"type": "dense", "out": 4, "name": "fc2"},
        {"type": "lif", "du": 0.3, "dv": 0.05, "vth": 0.5, "name": "lif2"},
    ],
}


def make_tiny(path, seed=0):
    torch.manual_seed(seed)
    model = SNN(TINY_CONFIG)
    with torch.no_grad():
        model.layers[0].module.weight.mul_(2.0)
        model.layers[1].bias.uniform_(-0.05, 0.1)
    save_checkpoint(model, path)
    return model


@pytest.fixture
def tiny_files(tmp_path):
    """A tiny conv+dense checkpoint and spike inputs with labels."""
    ckpt = tmp_path / "tiny.pt"
    make_tiny(ckpt)
    rng = np.random.default_rng(1)
    x = (rng.random((12, 10, 1, 6, 6)) < 0.3).astype(np.uint8)
    y = rng.integers(0, 4, 12)
    inputs = tmp_path / "inputs.npz"
    save_inputs(inputs, x, y)
    return ckpt, inputs, x, y


def _share_cores_between_xdist_workers():
    """Under pytest-xdist (`make test`), each worker gets its share of the cores for torch's
    intra-op threads instead of every worker starting one thread per core; the command-line
    runs the tests start (examples/gesture_networks.py --quick, the CLI) inherit it through
    OMP_NUM_THREADS. (That script took 38 s alone with two threads and 28 s with one; in
    the suite it took 116-125 s either way: Lava's lock-step workers are what slows it
    there.)"""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "0") or 0)
    if workers > 1:
        share = max(1, (os.cpu_count() or 1) // workers)
        torch.set_num_threads(share)
        os.environ.setdefault("OMP_NUM_THREADS", str(share))


def _load_hypothesis_profile():
    """tests/hypothesis_profile.py: the thorough profile draws 10x Hypothesis's default of 100
    examples for the tests that give no count (the others scale through `examples`)."""
    try:
        hypothesis_profile.check_profile()
    except ValueError as e:
        raise pytest.UsageError(str(e)) from None
    settings.register_profile("thorough",
                              max_examples=100 * hypothesis_profile.FACTORS["thorough"])
    if hypothesis_profile.PROFILE != "default":
        settings.load_profile(hypothesis_profile.PROFILE)


def pytest_configure(config):
    """Import Lava first, through the backend's guard: Lava fixes the multiprocessing start
    method when it is imported and fails if anything fixed it before (some tests import
    lava-dl's netx directly)."""
    _share_cores_between_xdist_workers()
    _load_hypothesis_profile()
    try:
        from snncompile.backends.lava.run import require_lava
        require_lava()
    except Exception:  # noqa: BLE001 - tests that need Lava report its absence themselves
        pass


#: the test files that take longest (seconds in one `make test`, --durations, at 2b14645),
#: started first: xdist hands whole files (--dist loadfile) to the workers in collection
#: order, so a long file collected last leaves the other worker idle at the end
SLOW_FILES = ["test_gesture_networks.py", "test_hostile_corpus.py",  # ~120 s, ~35 s
              "test_attention_bias.py", "test_feature_combinations.py",  # ~35, ~40 s
              "test_sim_lava.py", "test_sim_kernel.py", "test_residual_attention.py"]


def pytest_collection_modifyitems(session, config, items):
    rank = {name: i for i, name in enumerate(SLOW_FILES)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))   # stable
