"""Data-set verify over .npz shards (snncompile.scale): in-process and on a real Dask
LocalCluster of 2 worker processes, byte-identical reports, a worker killed mid-run, resume,
bad shards."""
import json
import os
import signal

import numpy as np
import pytest

from snncompile import scale
from snncompile.build import Build
from snncompile.cli import main
from snncompile.data import save_inputs
from snncompile.verify.compare import verify

from conftest import make_tiny

ALL3 = ("reference", "sim", "lava")


def _strip(rep) -> str:
    """The report's JSON without its measured wall times (the only thing that may differ)."""
    doc = rep.to_json()
    for v in doc["backends"].values():
        v.pop("wall_s")
    return json.dumps(doc)


def _text(rep) -> str:
    return "\n".join(l for l in rep.text().splitlines() if not l.startswith("wall time:"))


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    d = tmp_path_factory.mktemp("scale")
    make_tiny(d / "tiny.pt")
    rng = np.random.default_rng(1)
    x = (rng.random((8, 10, 1, 6, 6)) < 0.3).astype(np.uint8)
    y = rng.integers(0, 4, 8)
    save_inputs(d / "all.npz", x, y)
    (d / "shards").mkdir()
    for i in range(4):
        save_inputs(d / "shards" / f"s{i}.npz", x[2 * i:2 * i + 2], y[2 * i:2 * i + 2])
    assert main(["compile", str(d / "tiny.pt"), "--calib", str(d / "all.npz"), "-o",
                 str(d / "b.build")]) == 0
    return d, x, y


@pytest.fixture(scope="module")
def in_process(data):
    d, _, _ = data
    return scale.verify_dataset(d / "b.build", d / "shards", ALL3, fresh=True,
                                cache_dir=d / "c-in", progress=False)


@pytest.fixture(scope="module")
def client():
    import dask
    from distributed import Client, LocalCluster
    with dask.config.set({"distributed.worker.daemon": False}):
        cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                               dashboard_address=None)
    c = Client(cluster)
    yield c
    c.close()
    cluster.close()


def test_sharded_report_equals_verify_over_the_union(data):
    d, x, y = data
    rep = scale.verify_dataset(d / "b.build", d / "shards", ("reference", "sim"), fresh=True,
                               cache_dir=d / "c-union", progress=False)
    full = verify(Build.load(d / "b.build"), x.astype(np.int64), y, ("reference", "sim"))
    a, b = json.loads(_strip(rep)), json.loads(_strip(full))
    assert [s["shard"] for s in a.pop("shards")] == ["s0.npz", "s1.npz", "s2.npz", "s3.npz"]
    assert a.pop("not_compared") == []
    assert a == b                       # counts, accuracy, fidelity (exact moments) alike
    assert rep.samples == 8 and rep.equivalent and rep.fidelity.checked


def test_local_cluster_equals_in_process_with_lava(data, in_process, client):
    d, _, _ = data
    rep = scale.verify_dataset(d / "b.build", d / "shards", ALL3, client=client, fresh=True,
                               cache_dir=d / "c-dask", progress=False)
    assert list(rep.backends) == list(ALL3) and rep.backends["lava"]["spikes"] > 0
    assert _strip(rep) == _strip(in_process)
    assert _text(rep) == _text(in_process)
    assert rep.equivalent and rep.samples == 8


def test_worker_killed_mid_run_loses_nothing(data, in_process, client):
    d, _, _ = data
    killed = []

    def kill_one(_name):
        if killed:
            return
        busy = [w for w, tasks in client.processing().items() if tasks]
        if busy:
            pid = client.run(os.getpid, workers=[busy[0]])[busy[0]]
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)

    rep = scale.verify_dataset(d / "b.build", d / "shards", ALL3, client=client, fresh=True,
                               cache_dir=d / "c-kill", progress=False, on_result=kill_one)
    assert killed, "no worker was busy after the first shard finished"
    assert _strip(rep) == _strip(in_process) and not rep.not_compared


def test_interrupted_run_resumes_without_recomputing(data, monkeypatch):
    d, _, _ = data
    cache = d / "c-resume"
    backends = ("reference", "sim")
    full = scale.verify_dataset(d / "b.build", d / "shards", backends, fresh=True,
                                cache_dir=d / "c-ref", progress=False)

    def stop_after_two(name):
        if name == "s1.npz":
            raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        scale.verify_dataset(d / "b.build", d / "shards", backends, cache_dir=cache,
                             progress=False, on_result=stop_after_two)
    ran = []
    real = scale.verify_shard
    monkeypatch.setattr(scale, "verify_shard",
                        lambda b, s, *a: ran.append(os.path.basename(s)) or real(b, s, *a))
    rep = scale.verify_dataset(d / "b.build", d / "shards", backends, cache_dir=cache,
                               progress=False)
    assert ran == ["s2.npz", "s3.npz"] and rep.cached == ["s0.npz", "s1.npz"]
    assert _strip(rep) == _strip(full)
    ran.clear()
    scale.verify_dataset(d / "b.build", d / "shards", backends, cache_dir=cache, fresh=True,
                         progress=False)
    assert ran == ["s0.npz", "s1.npz", "s2.npz", "s3.npz"]        # --fresh recomputes


def test_corrupted_shard_is_named_and_skipped(data, tmp_path, capsys):
    d, x, y = data
    shards = tmp_path / "shards"
    shards.mkdir()
    for i in (0, 1, 3):
        (shards / f"s{i}.npz").write_bytes((d / "shards" / f"s{i}.npz").read_bytes())
    (shards / "s2.npz").write_bytes(b"PK\x03\x04 not really a zip")
    js = tmp_path / "v.json"
    rc = main(["verify", str(d / "b.build"), "--inputs", str(shards), "--backends",
               "reference,sim", "--json", str(js)])
    out, err = capsys.readouterr()
    assert rc == scale.EXIT_NOT_COMPARED, err
    assert "NOT COMPARED: 1 of 4 shards (s2.npz)" in out and "s2.npz" in err
    doc = json.loads(js.read_text())
    assert doc["samples"] == 6 and doc["equivalent"]
    assert [r["shard"] for r in doc["not_compared"]] == ["s2.npz"]
    assert "s2.npz" in doc["not_compared"][0]["error"]
    assert (tmp_path / "v.json.shards").is_dir()       # per-shard results beside the output


def test_first_divergence_is_renumbered_over_the_data_set(data, monkeypatch):
    """A simulator that flips one lif1 spike of global sample 5 (shard s2, sample 1): the
    sharded report names the same place as verify over the union."""
    d, x, y = data
    from snncompile.backends.sim import simulator as simmod
    target = x[5].astype(np.int64)
    real_run = simmod.Simulator.run

    def flipped(self, inputs, **kw):
        res = real_run(self, inputs, **kw)
        for i in range(len(inputs)):
            if np.array_equal(inputs[i], target):
                res.spikes["lif1"][i, 3].reshape(-1)[7] ^= True
        return res
    monkeypatch.setattr(simmod.Simulator, "run", flipped)
    rep = scale.verify_dataset(d / "b.build", d / "shards", ("reference", "sim"), fresh=True,
                               cache_dir=d / "c-div", progress=False)
    full = verify(Build.load(d / "b.build"), x.astype(np.int64), y, ("reference", "sim"))
    assert not rep.equivalent and rep.mismatches == full.mismatches >= 1
    dv = rep.first_divergence
    assert dv["sample"] == 5 and dv["shard"] == "s2.npz" and dv["shard_sample"] == 1
    assert {k: v for k, v in dv.items() if k not in ("shard", "shard_sample")} \
        == full.first_divergence
    assert rep.exit_code() == 1


def test_dataset_flags_refused_on_one_file(data, capsys):
    d, _, _ = data
    rc = main(["verify", str(d / "b.build"), "--inputs", str(d / "all.npz"), "--workers", "2"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and "apply to a data set" in err


def test_cli_on_an_existing_scheduler(data, client, tmp_path, capsys):
    d, x, y = data
    js = tmp_path / "v.json"
    rc = main(["verify", str(d / "b.build"), "--inputs", str(d / "shards" / "s*.npz"),
               "--backends", "reference,sim", "--scheduler", client.scheduler.address,
               "--json", str(js)])
    out, err = capsys.readouterr()
    assert rc == 0, err
    assert "EQUIVALENT" in out and "data set: 4 shards compared, 8 samples" in out
    doc = json.loads(js.read_text())
    full = verify(Build.load(d / "b.build"), x.astype(np.int64), y, ("reference", "sim"))
    assert doc["layers"] == full.to_json()["layers"] and doc["samples"] == 8
    rc = main(["verify", str(d / "b.build"), "--inputs", str(d / "shards"), "--backends",
               "reference,sim", "--scheduler", client.scheduler.address, "--json", str(js)])
    assert rc == 0 and "4 of 4 shards read from results stored" in capsys.readouterr().err


# ------------------------------------------------------------------ energy over a data set
def _energy_doc(path):
    doc = json.loads(path.read_text())
    doc["notes"] = [n for n in doc["notes"] if not n.startswith("data set ")]
    return doc


@pytest.mark.parametrize("extra", [[], ["--replace"]])
def test_energy_over_shards_equals_energy_over_the_union(data, tmp_path, extra, capsys):
    """Event counts are integers summed shard by shard, and a re-placement weighs the
    summed firing rates: the report is the one-file report exactly."""
    d, _, _ = data
    one, many = tmp_path / "one.json", tmp_path / "many.json"
    assert main(["energy", str(d / "b.build"), "--inputs", str(d / "all.npz"), "--json",
                 str(one), "--quiet"] + extra) == 0
    assert main(["energy", str(d / "b.build"), "--inputs", str(d / "shards"), "--json",
                 str(many), "--quiet", "--fresh"] + extra) == 0
    notes = json.loads(many.read_text())["notes"]
    assert any("4 shard(s), 8 samples counted" in n for n in notes)
    assert _energy_doc(one) == _energy_doc(many)
    assert json.loads(one.read_text())["energy_per_inference_j"] > 0


def test_energy_over_shards_on_two_workers_and_resumed(data, client, tmp_path):
    d, x, _ = data
    from snncompile.energy.run import count_events
    cache = tmp_path / "cache"
    events, used, bad = scale.energy_dataset(d / "b.build", d / "shards", client=client,
                                             cache_dir=cache, progress=False)
    assert (used, bad) == (["s0.npz", "s1.npz", "s2.npz", "s3.npz"], [])
    assert events == count_events(Build.load(d / "b.build"), x, progress=False)
    assert len(list(cache.glob("*.json"))) == 4
    again, _, _ = scale.energy_dataset(d / "b.build", d / "shards", cache_dir=cache,
                                       progress=False)       # read back, nothing recomputed
    assert again == events


def test_energy_names_a_bad_shard_and_counts_the_rest(data, tmp_path, capsys):
    d, _, _ = data
    shards = tmp_path / "shards"
    shards.mkdir()
    for i in range(2):
        (shards / f"s{i}.npz").write_bytes((d / "shards" / f"s{i}.npz").read_bytes())
    (shards / "zz.npz").write_bytes(b"PK\x03\x04 not really a zip")
    out = tmp_path / "e.json"
    assert main(["energy", str(d / "b.build"), "--inputs", str(shards), "--json", str(out),
                 "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "shard zz.npz not counted" in err
    notes = json.loads(out.read_text())["notes"]
    assert any("2 shard(s), 4 samples counted" in n and "NOT COUNTED: 1 shard(s) (zz.npz)"
               in n for n in notes)


def test_energy_refuses_dataset_flags_on_one_file(data, capsys):
    d, _, _ = data
    assert main(["energy", str(d / "b.build"), "--inputs", str(d / "all.npz"),
                 "--workers", "2"]) == 2
    assert "apply to a data set" in capsys.readouterr().err


# ------------------------------------------------------------------ calibration from a data set
def test_compile_calibrates_from_shards_as_from_their_union(data, tmp_path, capsys):
    """`compile --calib DIR` reads shards in order until --calib-samples: the build equals
    one calibrated on the same samples in one file; a bad shard is skipped and named."""
    d, x, y = data
    shards = tmp_path / "cal"
    shards.mkdir()
    (shards / "a.npz").write_bytes((d / "shards" / "s0.npz").read_bytes())
    (shards / "b.npz").write_bytes(b"not an npz")
    (shards / "c.npz").write_bytes((d / "shards" / "s1.npz").read_bytes())
    (shards / "d.npz").write_bytes((d / "shards" / "s2.npz").read_bytes())
    save_inputs(tmp_path / "first3.npz", x[:3], y[:3])
    assert main(["compile", str(d / "tiny.pt"), "--calib", str(tmp_path / "first3.npz"),
                 "--calib-samples", "3", "-o", str(tmp_path / "one.build"), "--quiet"]) == 0
    capsys.readouterr()
    assert main(["compile", str(d / "tiny.pt"), "--calib", str(shards), "--calib-samples",
                 "3", "-o", str(tmp_path / "many.build"), "--quiet"]) == 0
    err = capsys.readouterr().err
    assert "calibration shard b.npz" in err and "not used" in err
    one, many = Build.load(tmp_path / "one.build"), Build.load(tmp_path / "many.build")
    assert one.members["arrays.npz"] == many.members["arrays.npz"]
    assert one.members["graph.json"] == many.members["graph.json"]
    assert "3 samples from 2 shard(s)" in json.dumps(many.report)
    assert main(["compile", str(d / "tiny.pt"), "--calib", str(shards), "--strict",
                 "-o", str(tmp_path / "strict.build"), "--quiet"]) == 2
    assert not (tmp_path / "strict.build").exists()
