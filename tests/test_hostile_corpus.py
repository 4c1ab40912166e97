"""The hostile-file corpus through the real CLI (see tests/hostile_corpus.py).

Every case must: exit 0 or 2; print no traceback; print exactly one `snncompile: error:`
line on stderr when it exits 2 (third-party warnings count as lines); read nothing outside
its inputs (audit hook, plus inotify for the files the HDF5 attacks point at); write
nothing outside its output folder; finish within CASE_SECONDS; stay below PEAK_RSS_MB under
an RLIMIT_AS address-space limit.

`make test` runs a fixed, derandomized corpus (FIXED_CASES cases, same files every run).
`SNNCOMPILE_HOSTILE_CASES=2000 pytest tests/test_hostile_corpus.py -s` runs that many fresh
cases (a new seed each run, printed; SNNCOMPILE_HOSTILE_SEED replays one);
SNNCOMPILE_HOSTILE_REPORT=path.json writes the summary there.
"""
from __future__ import annotations

import collections
import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

import hostile_corpus as hc

FIXED_CASES = 240
FIXED_SEED = 20261201


def _snapshot(folder: Path) -> dict[str, str]:
    out = {}
    for p in sorted(folder.rglob("*")):
        if p.is_file() and not p.is_symlink():
            out[str(p.relative_to(folder))] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def _records(root: Path) -> tuple[dict[int, dict], int | None]:
    """Finished records by case id, and the id started last without a record."""
    done, started = {}, None
    path = root / "results.jsonl"
    if not path.exists():
        return done, None
    for line in path.read_text().splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        if "started" in rec:
            started = rec["started"]
        else:
            done[rec["id"]] = rec
    return done, (started if started is not None and started not in done else None)


def run_corpus(root: Path, n: int) -> dict[int, dict]:
    """Run all cases in as few subprocesses as possible: a case that kills or hangs its
    process is recorded as such and the next process resumes after it."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(hc.REPO), str(hc.HERE)]),
               PYTHONDONTWRITEBYTECODE="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1",
               MALLOC_ARENA_MAX="2", MPLCONFIGDIR=str(root / "mpl"))
    env.pop("SNNCOMPILE_DEBUG", None)
    (root / "mpl").mkdir(exist_ok=True)
    extra: dict[int, dict] = {}
    start = 0
    while start < n:
        proc = subprocess.Popen([sys.executable, str(hc.HERE / "hostile_corpus.py"), "run",
                                 str(root), str(start)], env=env, cwd=root,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        last, seen = time.monotonic(), -1
        while proc.poll() is None:
            time.sleep(0.5)
            size = (root / "results.jsonl").stat().st_size \
                if (root / "results.jsonl").exists() else 0
            if size != seen:
                last, seen = time.monotonic(), size
            elif time.monotonic() - last > max(hc.SECONDS.values()) * 2 + 120:
                proc.kill()
                proc.wait()
        err = proc.stderr.read().decode(errors="replace")[-500:]
        done, open_case = _records(root)
        if proc.returncode == 0 and open_case is None:
            break
        if open_case is None:      # died before its first case: a harness problem
            raise RuntimeError(f"corpus runner failed (exit {proc.returncode}): {err}")
        extra[open_case] = {"id": open_case, "status": "killed",
                            "detail": f"process exit {proc.returncode}: {err[-200:]}"}
        start = open_case + 1
    done, _ = _records(root)
    done.update(extra)
    return done


def summary(cases: list[dict], recs: dict[int, dict], failures: dict) -> dict:
    by_kind = collections.Counter(c["kind"] for c in cases)
    rcs = collections.Counter(str(recs.get(c["id"], {}).get("rc")) for c in cases)
    done = [r for r in recs.values() if r.get("status") == "done"]
    return {"cases": len(cases), "cli_calls": len(done), "by_kind": dict(sorted(by_kind.items())),
            "exit_status": dict(sorted(rcs.items())),
            "max_seconds": max((r["seconds"] for r in done), default=0),
            "max_peak_rss_mb": max((r["peak_mb"] for r in done), default=0),
            "failures": len(failures),
            "reads_outside": sum(any("read outside" in v for v in r.get("violations", ()))
                                 for r in done),
            "writes_outside": sum(any("write outside" in v for v in r.get("violations", ()))
                                  for r in done),
            "tracebacks": sum("Traceback" in r.get("stderr", "") for r in done),
            "timeouts_or_kills": sum(r.get("status") != "done" for r in recs.values()),
            "generator_retries": sum(len(c.get("generator_errors", ())) for c in cases)}


def test_hostile_corpus(tmp_path_factory):
    wanted = os.environ.get("SNNCOMPILE_HOSTILE_CASES")
    n = int(wanted) if wanted else FIXED_CASES
    seed = int(os.environ.get("SNNCOMPILE_HOSTILE_SEED",
                              FIXED_SEED if not wanted else int.from_bytes(os.urandom(4),
                                                                           "little")))
    root = tmp_path_factory.mktemp("hostile")
    hc.make_seeds(root)
    cases = hc.make_cases(root, n, seed, quick=not wanted)
    before = _snapshot(root / "seeds"), _snapshot(root / "outside")
    t0 = time.perf_counter()
    recs = run_corpus(root, n)
    wall = time.perf_counter() - t0
    failures = {}
    for case in cases:
        rec = recs.get(case["id"], {"status": "missing"})
        bad = hc.check(case, rec)
        stray = sorted(p.name for p in Path(case["dir"]).iterdir()
                       if p.name not in ("in", "out", "stdout.txt", "stderr.txt"))
        if stray:
            bad.append(f"files written next to the output: {stray}")
        if bad:
            failures[case["id"]] = (case["kind"], bad, case["argv"], rec.get("stderr", ""))
    if (_snapshot(root / "seeds"), _snapshot(root / "outside")) != before:
        failures[-1] = ("all", ["a seed or outside file was modified"], [], "")
    report = summary(cases, recs, failures) | {"seed": seed, "wall_s": round(wall, 1)}
    print("\nhostile corpus:", json.dumps(report))
    if os.environ.get("SNNCOMPILE_HOSTILE_REPORT"):
        Path(os.environ["SNNCOMPILE_HOSTILE_REPORT"]).write_text(
            json.dumps(report | {"failed": {str(k): v for k, v in failures.items()}},
                       indent=1))
    lines = [f"case {i} [{kind}] {'; '.join(bad)} :: {' '.join(argv)} :: {err.strip()[:300]}"
             for i, (kind, bad, argv, err) in sorted(failures.items())[:25]]
    assert not failures, f"{len(failures)} of {n} cases failed (seed {seed}):\n" + \
        "\n".join(lines)


def test_every_kind_generates_and_the_checks_can_fail(tmp_path):
    """Each registered generator writes its files; `check` flags each kind of failure."""
    hc.make_seeds(tmp_path)
    cases = hc.make_cases(tmp_path, len(hc.GENERATORS), 7)
    assert sorted(c["kind"] for c in cases) == sorted(hc.GENERATORS)
    ok = {"status": "done", "rc": 2, "stderr": "snncompile: error: x\n", "stdout": "",
          "violations": [], "seconds": 0.1, "peak_mb": 100}
    assert hc.check(cases[0], ok) == []
    for change, word in [({"rc": 3}, "exit 3"), ({"rc": 1}, "exit 1"),
                         ({"stderr": "warning\nsnncompile: error: x\n"}, "one error line"),
                         ({"stderr": "Traceback (most recent call last):\n"}, "traceback"),
                         ({"violations": ["read outside the inputs: /etc/passwd"]},
                          "read outside"),
                         ({"seconds": 1e4}, "took"), ({"peak_mb": 1e5}, "peak RSS"),
                         ({"status": "timeout"}, "timeout")]:
        assert any(word in b for b in hc.check(cases[0], ok | change)), change


@pytest.mark.parametrize("attack", ["audit", "inotify"])
def test_the_runner_sees_reads_outside(tmp_path, attack):
    """The runner's own detectors, on a case that does read outside: a Python open of the
    secret (audit hook) and a libhdf5 read of it through external storage with the safety
    check bypassed (inotify)."""
    hc.make_seeds(tmp_path)
    case = tmp_path / "cases" / "00000"
    (case / "in").mkdir(parents=True)
    (case / "out").mkdir()
    script = tmp_path / "leak.py"
    if attack == "audit":
        body = f"open({str(tmp_path / 'outside' / 'secret.txt')!r}).read()"
    else:
        body = ("import h5py, numpy as np\n"
                f"p = {str(case / 'in' / 'x.h5')!r}\n"
                "with h5py.File(p, 'w') as f:\n"
                f"    f.create_dataset('w', shape=(8,), dtype='u1', external=[("
                f"{str(tmp_path / 'outside' / 'secret.txt')!r}, 0, 8)])\n"
                "with h5py.File(p, 'r') as f:\n"
                "    f['w'][()]\n")
    script.write_text(body + "\n")
    # a fake CLI: the runner calls cli.main(argv); argv[0] is a script for runpy
    (tmp_path / "cases.json").write_text(json.dumps(
        [{"id": 0, "kind": "leak", "argv": ["__leak__", str(script)], "dir": str(case)}]))
    code = ("import runpy, sys; sys.path.insert(0, sys.argv[3]); import hostile_corpus as hc; "
            "from snncompile import cli; "
            "cli.main = lambda argv: runpy.run_path(argv[1]) and 0; "
            "hc._warm_up = lambda root, cli: None; "
            "hc.run_cases(__import__('pathlib').Path(sys.argv[1]), int(sys.argv[2]))")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(hc.REPO), str(hc.HERE)]))
    subprocess.run([sys.executable, "-c", code, str(tmp_path), "0", str(hc.HERE)], env=env,
                   check=True, timeout=300)
    rec = json.loads((tmp_path / "results.jsonl").read_text().splitlines()[-1])
    assert any("read outside the inputs" in v and "secret.txt" in v
               for v in rec["violations"]), rec
