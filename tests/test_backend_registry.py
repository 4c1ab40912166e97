"""`verify`, `snncompile run` and `snncompile verify` find backends in the registry
(`snncompile.backends`): a backend registered at test time is run, compared and named like
the built-in ones, the CLI's choices are `backend_names()`, and a name the registry does
not know is refused in one line (exit 2)."""
import numpy as np
import pytest

from snncompile.backends import backend_names, base, get_backend
from snncompile.build import Build
from snncompile.cli import _parser, main
from snncompile.verify import compare as V


class FlipOne:
    """The simulator with one lif1 spike flipped (sample 2, local step 3, neuron 0) in every
    run of more than two samples; a one-sample re-run (the divergence's u and v) is left
    alone. `is_lava` is set per test."""

    name = "flipper"
    description = "the simulator with one spike flipped (test)"
    is_lava = False

    def __init__(self, is_lava=False):
        self.is_lava = is_lava
        self.calls = []

    def unsupported(self, graph, source=None):
        return None

    def run(self, graph, inputs, *, numerics=None, source=None, progress=False, **options):
        self.calls.append(len(inputs))
        res = get_backend("sim").run(graph, inputs, numerics=numerics, progress=progress,
                                     **options)
        res.backend = self.name
        if len(inputs) > 2 and not options.get("record_state"):
            flat = res.values["lif1"][2, 3].reshape(-1)
            flat[0] = not flat[0]
        return res


@pytest.fixture
def tiny_build(tiny_files, tmp_path):
    ckpt, inputs, x, _ = tiny_files
    build = tmp_path / "tiny.build"
    assert main(["compile", str(ckpt), "--calib", str(inputs), "-o", str(build),
                 "--quiet"]) == 0
    return build, inputs, x


@pytest.fixture
def flipper(monkeypatch):
    fake = FlipOne()
    monkeypatch.setitem(base._REGISTRY, fake.name, fake)   # removed after the test
    return fake


def test_verify_dispatches_through_the_registry(tiny_build, flipper):
    build, _, x = tiny_build
    rep = V.verify(Build.load(build), x, backends=("reference", "flipper"))
    assert flipper.calls[0] == len(x)               # it ran, on every sample
    assert not rep.equivalent and rep.mismatches == 1
    lif1 = next(r for r in rep.layers if r["layer"] == "lif1")
    assert lif1["mismatches"] == {"flipper": 1}
    d = rep.first_divergence
    assert (d["layer"], d["sample"], d["step"], d["neuron"]) == ("lif1", 2, 3, 0)
    # global step = local step + depth, from snncompile.ir.timing
    from snncompile.ir.timing import timing
    assert d["global_step"] == timing(Build.load(build).graph, x.shape[1]).to_global("lif1", 3)
    # u and v come from the fake's own Run (record_state=True), not a built-in backend
    assert set(d["sides"]) == {"reference", "flipper"}
    assert isinstance(d["sides"]["flipper"]["u"], int)
    assert d["sides"]["flipper"]["spike"] != d["sides"]["reference"]["spike"]
    assert "mismatch flipper" in rep.text()
    assert "between reference, flipper" in rep.summary()[0]


def test_is_lava_comes_from_the_backend(tiny_build, monkeypatch):
    """A registered backend with is_lava=True gets `lava_samples` samples and the note."""
    build, _, x = tiny_build
    fake = FlipOne(is_lava=True)
    monkeypatch.setitem(base._REGISTRY, fake.name, fake)
    rep = V.verify(Build.load(build), x, backends=("reference", "flipper"), lava_samples=2)
    assert fake.calls[0] == 2 and rep.backends["flipper"]["samples"] == 2
    assert rep.equivalent                       # its fault sits in sample 2: not run
    assert rep.lava_samples["ran"] == 2
    assert rep.lava_note().startswith("flipper compared only 2 of")


def test_default_backends_are_those_the_graph_alone_can_run(tiny_build):
    b = Build.load(tiny_build[0])
    assert b.netx_source() is None
    expect = tuple(n for n in backend_names() if get_backend(n).unsupported(b.graph) is None)
    assert V.default_backends(b) == expect
    assert "netx" in backend_names() and "netx" not in expect
    assert expect[0] == "reference"


def _run_action(parser):
    sub = next(a for a in parser._actions if a.dest == "command")
    return next(a for a in sub.choices["run"]._actions if a.dest == "backend")


def test_run_backend_choices_are_the_registry_names(tiny_build, flipper, tmp_path, capsys):
    assert _run_action(_parser()).metavar == "{" + ",".join(backend_names()) + "}"
    assert "flipper" in backend_names()
    build, inputs, x = tiny_build
    out = tmp_path / "o.npz"
    assert main(["run", str(build), "--inputs", str(inputs), "--backend", "flipper",
                 "-o", str(out), "--quiet"]) == 0
    assert capsys.readouterr().out.startswith(f"flipper: {len(x)} samples")
    assert flipper.calls == [len(x)]
    with np.load(out) as z:
        assert z["output_spikes"].shape[0] == len(x)


@pytest.mark.parametrize("argv, what", [
    (["run", "--backend", "bogus"], "unknown backend 'bogus'; choose from "),
    (["verify", "--backends", "reference,bogus"], "--backends: need at least two different"),
    (["run", "--backend", "netx"], "--backend netx: the netx backend needs a build compiled "
                                   "from a netx file"),
])
def test_unknown_or_unusable_backend_is_one_line_exit_2(tiny_build, capsys, argv, what):
    build, inputs, _ = tiny_build
    rc = main([argv[0], str(build), "--inputs", str(inputs), *argv[1:], "--quiet"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1, err
    assert err[0].startswith("snncompile: error: ") and what in err[0], err
    if "choose from" in what or "--backends" in what:
        assert ", ".join(backend_names()) in err[0]


def test_verify_refuses_netx_without_source_before_running(tiny_build, flipper):
    build, _, x = tiny_build
    from snncompile.errors import UnsupportedError
    with pytest.raises(UnsupportedError, match="backend 'netx': the netx backend needs"):
        V.verify(Build.load(build), x, backends=("flipper", "netx"))
    assert flipper.calls == []                  # refused before anything ran
