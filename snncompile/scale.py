"""Verify over a data set of `.npz` shards: in-process, on an embedded Dask `LocalCluster`
(`--workers N`) or on an existing Dask cluster (`--scheduler ADDRESS`).

One task per shard: `verify()` on that shard with every backend (all backends in one task so
the first divergence names every backend's spike, u and v at the same place, exactly as one
`verify()` over the union does). Each shard's result goes through one canonical JSON form
and is merged by `merge()`: counts add up, the first divergence is the earliest shard's
(its sample renumbered over the data set, with the shard and the sample inside it), and the
second verdict is recomputed from the shards' exact integer statistics
(`fidelity.merge_statistics`). The in-process path and the Dask path run the same task
function and the same merge, so their reports are identical by construction (wall times
apart: they are measured).

Fault tolerance: a worker that dies mid-task has its shard re-run on another worker by the
scheduler (`distributed.scheduler.allowed-failures`), a task that raises is retried
(`RETRIES`); every finished shard is stored beside the output in `CACHE` files keyed by the
build's hash, the shard's sha256, the backends and the tolerance, so an interrupted run
resumes where it stopped (`fresh=True` ignores them). A shard whose inputs are bad, or whose
task keeps failing, is reported by name with its one-line error; the others are compared,
and the verdict says which were not (exit status 2 when nothing else failed).

Lava forks its own processes, which daemonic processes may not do: the embedded cluster's
workers are started with `distributed.worker.daemon: False`. An existing cluster must be
started the same way (`DASK_DISTRIBUTED__WORKER__DAEMON=False dask worker ...`) to run Lava.
Workers must see the build and the shards at the same paths as the client (shared disk).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import sys
import time
import zipfile
from pathlib import Path

import numpy as np

from .errors import InputFileError, SnnCompileError
from snncompile.verify.fidelity import FidelityReport, Tolerance, from_statistics, merge_statistics
from snncompile.verify.compare import VerifyReport

FORMAT = 2
"""Version of a stored shard result; part of its key (2: the key names the task)."""
RETRIES = 2
EXIT_NOT_COMPARED = 2
PROGRESS_EVERY_S = 10.0


@dataclasses.dataclass
class DatasetReport(VerifyReport):
    shards: list = dataclasses.field(default_factory=list)
    """Compared shards in order: shard (file name), samples, first_sample (its first sample's
    number in the data set). Which results were read from an earlier run is in `cached`
    (an attribute, not in the JSON: a resumed report equals an uninterrupted one)."""
    not_compared: list = dataclasses.field(default_factory=list)
    """Shards left out: shard and error (one line)."""

    def exit_code(self) -> int:
        code = super().exit_code()
        return code if code or not self.not_compared else EXIT_NOT_COMPARED

    def _not_compared_line(self) -> str | None:
        if not self.not_compared:
            return None
        names = ", ".join(r["shard"] for r in self.not_compared)
        return (f"NOT COMPARED: {len(self.not_compared)} of "
                f"{len(self.not_compared) + len(self.shards)} shards ({names}); the verdicts "
                "above cover the other shards only")

    def summary(self) -> list[str]:
        lines = super().summary()
        if self.not_compared:
            lines.append(self._not_compared_line())
            lines += [f"shard {r['shard']}: {r['error']}" for r in self.not_compared]
        return lines

    def text(self) -> str:
        lines = [super().text(), "",
                 f"data set: {len(self.shards)} shards compared, {self.samples} samples"]
        if self.not_compared:
            lines.append(self._not_compared_line())
            lines += [f"  {r['shard']}: {r['error']}" for r in self.not_compared]
        return "\n".join(lines)


# ----------------------------------------------------------------------------- hashing
def build_hash(build) -> str:
    """sha256 over the build's manifest (every member's sha256)."""
    doc = json.dumps(sorted(build.members.items()), separators=(",", ":"))
    return hashlib.sha256(doc.encode()).hexdigest()


def file_hash(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def count_samples(path: Path) -> int:
    """Samples in a shard from its 'inputs' header alone (0 when unreadable): for the
    progress bar's total, without loading the shard."""
    try:
        with zipfile.ZipFile(path) as z, z.open("inputs.npy") as f:
            version = np.lib.format.read_magic(f)
            shape = np.lib.format._read_array_header(f, version)[0]
            return int(shape[0]) if shape else 0
    except Exception:  # noqa: BLE001 - the task reports a bad shard properly
        return 0


# ----------------------------------------------------------------------------- one task
_BUILDS: dict = {}


def verify_shard(build_dir: str, shard: str, backends: tuple, tol: dict) -> dict:
    """The task: verify one shard. Returns the canonical JSON form of its result, or
    {"error": one line} when the shard's inputs are bad."""
    from .build import Build
    from .data import load_inputs
    from snncompile.verify.compare import verify

    from snncompile.verify.compare import is_lava
    if any(is_lava(b) for b in backends):
        _lava_in_worker()
    build = _load_build(build_dir)
    graph = build.graph
    n_classes = int(np.prod(graph.shape(graph.inputs(graph.output_node().name)[0])))
    try:
        x, labels = load_inputs(shard, graph.input_node(), n_classes)
    except SnnCompileError as exc:
        return {"error": str(exc)}
    rep = verify(build, x, labels, tuple(backends), progress=False,
                 tolerance=Tolerance(**tol), sensitivity=0)   # per shard: not meaningful
    doc = rep.to_json()
    doc["statistics"] = rep.fidelity.statistics
    return _canonical(doc)


def energy_shard(build_dir: str, shard: str, energy_table: str | None) -> dict:
    """The task of `snncompile energy` over a data set: the event counts of one shard on the
    simulator (`energy.run.count_events`), or {"error": one line} for bad inputs."""
    from .data import load_inputs
    from snncompile.energy.run import count_events

    build = _load_build(build_dir)
    try:
        x, _ = load_inputs(shard, build.graph.input_node())
    except SnnCompileError as exc:
        return {"error": str(exc)}
    return count_events(build, x, energy_table, progress=False)


def energy_dataset(build_dir, spec, energy_table: str | None = None, *,
                   workers: int | None = None, scheduler: str | None = None, client=None,
                   fresh: bool = False, cache_dir=None, progress: bool = True):
    """Event counts of every shard of data set `spec`, summed: (events, shards used,
    not_compared rows). Pricing the sum (`energy.run.price`) gives the report of one
    in-process run over all shards' samples, since counts add up exactly."""
    from .build import Build
    from snncompile.energy.run import merge_events

    build_dir = str(Path(build_dir).resolve())
    build = Build.load(build_dir)
    runner = ShardRunner(energy_shard, (energy_table,), "energy", workers=workers,
                         scheduler=scheduler, client=client, fresh=fresh, progress=progress)
    paths, results = runner.run(build, build_dir, spec, cache_dir or cache_dir_for(build_dir))
    parts, bad = [], []
    for p in paths:
        doc, _ = results[p.name]
        if "error" not in doc and parts and doc["steps"] != parts[0][1]["steps"]:
            doc = {"error": f"{p}: 'inputs' has {doc['steps']} time steps but the data "
                            f"set's first shard has {parts[0][1]['steps']}"}
        if "error" in doc:
            bad.append({"shard": p.name, "error": doc["error"]})
        else:
            parts.append((p.name, doc))
    if not parts:
        raise InputFileError("no shard could be used: " + "; ".join(
            f"{r['shard']}: {r['error']}" for r in bad))
    return merge_events([d for _, d in parts]), [n for n, _ in parts], bad


def _load_build(build_dir: str):
    """The build, loaded once per worker process."""
    from .build import Build

    if build_dir not in _BUILDS:
        _BUILDS.clear()
        _BUILDS[build_dir] = Build.load(build_dir)
    return _BUILDS[build_dir]


def _lava_in_worker() -> None:
    """A Dask worker process is spawned, so its multiprocessing start method is 'spawn'
    already; Lava needs 'fork' (it forks its runtime processes, which is why the workers are
    not daemonic). Inside a worker, and only there, switch to 'fork' before Lava is
    imported."""
    import multiprocessing as mp

    try:
        from distributed import get_worker
        get_worker()
    except (ImportError, ValueError):
        return                                   # not in a worker: leave the process alone
    if "lava.magma.runtime.message_infrastructure.multiprocessing" not in sys.modules \
            and mp.get_start_method(allow_none=True) != "fork":
        mp.set_start_method("fork", force=True)


def _canonical(doc: dict) -> dict:
    return json.loads(json.dumps(doc))


def _report(doc: dict) -> VerifyReport:
    fields = {f.name for f in dataclasses.fields(VerifyReport)}
    rep = VerifyReport(**{k: v for k, v in doc.items() if k in fields})
    rep.fidelity = FidelityReport.from_json(doc["fidelity"])
    rep.fidelity.statistics = doc["statistics"]
    return rep


# ----------------------------------------------------------------------------- merge
def _add(a, b):
    """Generic sum of two per-shard values: numbers add, dicts add key by key, lists add
    element by element; anything else must be equal."""
    if isinstance(a, bool) or isinstance(b, bool) or a is None or b is None:
        if a != b:
            raise ValueError(f"cannot merge {a!r} and {b!r}")
        return a
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a + b
    if isinstance(a, dict) and isinstance(b, dict) and a.keys() == b.keys():
        return {k: _add(a[k], b[k]) for k in a}
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [_add(x, y) for x, y in zip(a, b)]
    if a != b:
        raise ValueError(f"cannot merge {a!r} and {b!r}")
    return a


def _keyed_sum(rows_per_shard: list[list[dict]], key: str, same=()) -> list[dict]:
    """Rows (layers, co-processor channels) summed across shards; the name column and the
    `same` columns (equal in every shard) kept."""
    out = []
    for rows in zip(*rows_per_shard):
        merged = {key: rows[0][key]}
        for col in rows[0]:
            if col in same:
                if any(r[col] != rows[0][col] for r in rows):
                    raise ValueError(f"{rows[0][key]}: {col} differs between shards")
                merged[col] = rows[0][col]
            elif col != key:
                acc = rows[0][col]
                for r in rows[1:]:
                    acc = _add(acc, r[col])
                merged[col] = acc
        out.append(merged)
    return out


def merge(parts: list[tuple[str, dict, bool]], not_compared: list[dict],
          tolerance: Tolerance) -> DatasetReport:
    """One report from the shards' results (`parts`: (shard name, canonical result,
    cached), in data-set order)."""
    reports = [_report(doc) for _, doc, _ in parts]
    first = reports[0]
    offsets, shards, n = [], [], 0
    for (name, _, cached), rep in zip(parts, reports):
        offsets.append(n)
        shards.append({"shard": name, "samples": rep.samples, "first_sample": n})
        n += rep.samples
    divergence = None
    for (name, _, _), rep, off in zip(parts, reports, offsets):
        if rep.first_divergence:
            d = dict(rep.first_divergence)
            d["shard"], d["shard_sample"] = name, d["sample"]
            d["sample"] = d["sample"] + off
            divergence = d
            break
    backends = {b: {"wall_s": round(sum(r.backends[b]["wall_s"] for r in reports), 4),
                    "spikes": sum(r.backends[b]["spikes"] for r in reports),
                    **({"samples": sum(r.backends[b]["samples"] for r in reports)}
                       if "samples" in first.backends[b] else {})}
                for b in first.backends}
    fid_first = first.fidelity
    stats = merge_statistics([r.fidelity.statistics for r in reports])
    fid = from_statistics(stats, tolerance, fid_first.float_model,
                          reason=None if fid_first.checked else fid_first.reason)
    accuracy = None
    labelled = [r for r in reports if r.accuracy]
    if labelled:
        m = sum(r.accuracy["samples"] for r in labelled)
        right = sum(round(r.accuracy["compiled"] * r.accuracy["samples"]) for r in labelled)
        accuracy = {"samples": m, "float": None, "compiled": right / m, "agreement": None}
        if fid.accuracy is not None and stats["labelled"] == m:
            accuracy.update({"float": fid.accuracy["float"], "agreement": fid.agreement})
    mismatches = sum(r.mismatches for r in reports)
    extra = {}
    known = {"equivalent", "mismatches", "samples", "steps", "neurons_compared", "backends",
             "layers", "first_divergence", "accuracy", "boundary", "fidelity"}
    for f in dataclasses.fields(VerifyReport):   # fields added later: summed generically
        if f.name not in known:
            acc = getattr(first, f.name)
            for r in reports[1:]:
                acc = _add(acc, getattr(r, f.name))
            extra[f.name] = acc
    out = DatasetReport(equivalent=mismatches == 0, mismatches=mismatches, samples=n,
                         steps=first.steps,
                         neurons_compared=sum(r.neurons_compared for r in reports),
                         backends=backends,
                         layers=_keyed_sum([r.layers for r in reports], "layer", ("neurons",)),
                         first_divergence=divergence, accuracy=accuracy,
                         boundary=_keyed_sum([r.boundary for r in reports], "channel"),
                         fidelity=fid, shards=shards, not_compared=not_compared, **extra)
    out.cached = [name for name, _, cached in parts if cached]
    return out


# ----------------------------------------------------------------------------- progress
class _Progress:
    """One bar over all shards and workers (samples/s, time left); on a pipe, one line every
    PROGRESS_EVERY_S seconds and at the end."""

    def __init__(self, total: int, shards: int, enabled: bool, label: str = "verify"):
        self.total, self.shards, self.done, self.done_shards = total, shards, 0, 0
        self.label = label
        self.t0 = self.last = time.monotonic()
        self.bar = None
        self.enabled = enabled
        if enabled and sys.stderr.isatty():
            from tqdm import tqdm
            self.bar = tqdm(total=total, unit="sample", desc=f"{label} 0/{shards} shards",
                            file=sys.stderr, dynamic_ncols=True)

    def update(self, samples: int):
        self.done += samples
        self.done_shards += 1
        if self.bar is not None:
            self.bar.set_description(f"{self.label} {self.done_shards}/{self.shards} shards")
            self.bar.update(samples)
            return
        now = time.monotonic()
        if self.enabled and (now - self.last >= PROGRESS_EVERY_S
                             or self.done_shards == self.shards):
            self.last = now
            rate = self.done / max(now - self.t0, 1e-9)
            left = (self.total - self.done) / rate if rate and self.total > self.done else 0
            print(f"snncompile: {self.label}: {self.done_shards}/{self.shards} shards, "
                  f"{self.done}/{self.total} samples, {rate:.2f} samples/s, "
                  f"about {left:.0f} s left", file=sys.stderr, flush=True)

    def close(self):
        if self.bar is not None:
            self.bar.close()


# ----------------------------------------------------------------------------- driver
def cache_dir_for(build_dir, output=None) -> Path:
    """Where shard results are stored: beside the JSON output, else beside the build."""
    base = Path(output) if output else Path(build_dir)
    return base.parent / (base.name + ".shards")


def _client(workers: int | None, scheduler: str | None):
    import dask
    from distributed import Client, LocalCluster

    if scheduler:
        try:
            return Client(scheduler, timeout="20s"), None
        except (OSError, TimeoutError, ValueError) as exc:
            raise InputFileError(f"--scheduler {scheduler}: cannot reach a Dask scheduler "
                                 f"there ({type(exc).__name__}: {exc})") from None
    with dask.config.set({"distributed.worker.daemon": False}):
        cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                               dashboard_address=None)
    return Client(cluster), cluster


def verify_dataset(build_dir, spec, backends: tuple | None = None,
                   tolerance: Tolerance | None = None, *, workers: int | None = None,
                   scheduler: str | None = None, client=None, fresh: bool = False,
                   cache_dir=None, progress: bool = True, on_result=None) -> DatasetReport:
    """Verify every shard of data set `spec` (directory or glob). `workers` > 1: an embedded
    LocalCluster; `scheduler`: an existing cluster; `client`: a Dask client to use; none of
    them: in-process. `on_result(shard_name)` is called after each shard is stored.
    `backends` None: `verify`'s default for this build (`default_backends`)."""
    from .build import Build
    from snncompile.verify.compare import default_backends

    tol = tolerance or Tolerance()
    build_dir = str(Path(build_dir).resolve())
    build = Build.load(build_dir)
    backends = default_backends(build) if backends is None else tuple(backends)
    runner = ShardRunner(verify_shard, (tuple(backends), dataclasses.asdict(tol)), "verify",
                         workers=workers, scheduler=scheduler, client=client, fresh=fresh,
                         progress=progress, on_result=on_result)
    paths, results = runner.run(build, build_dir, spec,
                                cache_dir or cache_dir_for(build_dir))
    return _assemble(paths, results, tol)


@dataclasses.dataclass
class ShardRunner:
    """Run `task(build_dir, shard, *args)` once per shard of a data set: in-process, on an
    embedded LocalCluster (`workers` > 1), on an existing cluster (`scheduler`) or with a
    given Dask `client`. Every finished result (a JSON document; {"error": line} for a bad
    shard) is stored in the cache under a key of (build, shard content, `label`, args), and
    read back by the next run unless `fresh`. One progress bar over all shards."""
    task: object
    args: tuple
    label: str
    workers: int | None = None
    scheduler: str | None = None
    client: object = None
    fresh: bool = False
    progress: bool = True
    on_result: object = None

    def run(self, build, build_dir: str, spec, cache) -> tuple[list[Path], dict]:
        """(shard paths, {shard name: (result, read from cache)})."""
        from .data import shard_paths

        paths = shard_paths(spec)
        names = [p.name for p in paths]
        if len(set(names)) != len(names):
            raise InputFileError(f"{spec}: two shards share a file name; name shards uniquely")
        cache = Path(cache)
        cache.mkdir(parents=True, exist_ok=True)
        bh = build_hash(build)
        keys = {p.name: self._key(bh, file_hash(p)) for p in paths}
        results = self._stored(paths, keys, cache)
        todo = [p for p in paths if p.name not in results]
        bar = _Progress(sum(count_samples(p) for p in paths), len(paths), self.progress,
                        self.label)
        for doc, _ in results.values():
            bar.update(_samples(doc))

        def done(p: Path, doc: dict):
            from .safe_io import atomic_write_text
            results[p.name] = (doc, False)
            if "error" not in doc:
                atomic_write_text(cache / f"{keys[p.name]}.json", json.dumps(doc))
            bar.update(_samples(doc))
            if self.on_result is not None:
                self.on_result(p.name)

        try:
            if todo and (self.client is not None or self.scheduler or (self.workers or 1) > 1):
                _run_dask(todo, self, build_dir, done)
            else:
                for p in todo:
                    done(p, _canonical(self.task(build_dir, str(p), *self.args)))
        finally:
            bar.close()
        return paths, results

    def _key(self, build_h: str, shard_h: str) -> str:
        doc = json.dumps([FORMAT, self.label, build_h, shard_h, list(self.args)],
                         separators=(",", ":"))
        return hashlib.sha256(doc.encode()).hexdigest()[:32]

    def _stored(self, paths, keys, cache) -> dict:
        results = {}
        for p in paths:
            stored = cache / f"{keys[p.name]}.json"
            if not self.fresh and stored.is_file():
                try:
                    results[p.name] = (json.loads(stored.read_text()), True)
                except (OSError, ValueError):
                    pass                                 # unreadable: recompute
        return results


def _samples(doc: dict) -> int:
    return 0 if "error" in doc else int(doc["samples"])


def _run_dask(todo, runner: ShardRunner, build_dir: str, done):
    from distributed import as_completed

    client, cluster = runner.client, None
    own = client is None
    if own:
        client, cluster = _client(runner.workers, runner.scheduler)
    try:
        futures = {client.submit(runner.task, build_dir, str(p), *runner.args,
                                 retries=RETRIES, pure=False): p for p in todo}
        for fut in as_completed(futures):
            p = futures[fut]
            try:
                doc = _canonical(fut.result())
            except Exception as exc:  # noqa: BLE001 - a task that kept failing: named
                msg = str(exc).splitlines()[0] if str(exc) else ""
                doc = {"error": f"{type(exc).__name__}: {msg} (the task failed; Dask "
                                f"retried it {RETRIES} times)"}
            done(p, doc)
    finally:
        if own:
            client.close()
            if cluster is not None:
                cluster.close()


def _assemble(paths, results, tol) -> DatasetReport:
    parts, bad, steps = [], [], None
    for p in paths:
        doc, cached = results[p.name]
        if "error" in doc:
            bad.append({"shard": p.name, "error": doc["error"]})
            continue
        if steps is None:
            steps = doc["steps"]
        elif doc["steps"] != steps:
            bad.append({"shard": p.name, "error": f"{p}: 'inputs' has {doc['steps']} time "
                        f"steps but the data set's first shard has {steps}"})
            continue
        parts.append((p.name, doc, cached))
    if not parts:
        raise InputFileError("no shard could be compared: " + "; ".join(
            f"{r['shard']}: {r['error']}" for r in bad))
    return merge(parts, bad, tol)



def check_dataset_flags(args) -> None:
    """The command-line flags a data set run refuses (`verify`, `energy`)."""
    if args.limit:
        raise InputFileError(f"--limit applies to one .npz file; {args.inputs} is a data set "
                             "(choose its shards instead)")
    if args.workers and args.scheduler:
        raise InputFileError("--workers and --scheduler: choose one (an embedded cluster or "
                             "an existing one)")


def dataset_report(args, backends: tuple, tol: Tolerance) -> DatasetReport:
    """`snncompile verify --inputs DATA_SET` (cli.py): the flags to `verify_dataset`, what a
    user must know on stderr."""
    check_dataset_flags(args)
    cache = cache_dir_for(args.build, args.json)
    rep = verify_dataset(args.build, args.inputs, backends, tol, workers=args.workers,
                         scheduler=args.scheduler, fresh=args.fresh, cache_dir=cache)
    if rep.cached:
        print(f"snncompile: verify: {len(rep.cached)} of {len(rep.shards)} shards read from "
              f"results stored in {cache} by an earlier run (--fresh recomputes them)",
              file=sys.stderr)
    return rep
