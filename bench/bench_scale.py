"""Benchmark: data-set verify on 2 local Dask workers vs one process, from one run.

Builds the tests' tiny conv+dense model (compiled with calibration data), writes a data set
of SHARDS .npz shards of SAMPLES samples each, verifies it in-process and then on an
embedded LocalCluster of WORKERS worker processes (cluster start-up included), checks the
two reports are identical (wall times apart) and prints the speed-up.

    PYTHONPATH=$PWD .venv/bin/python bench/bench_scale.py [--shards 8] [--samples 16]
        [--backends reference,sim,lava] [--workers 2]     (default: verify's backends)
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))


def main(argv=None) -> None:
    from conftest import make_tiny

    from snncompile.cli import main as cli
    from snncompile.data import save_inputs
    from snncompile.scale import verify_dataset

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shards", type=int, default=8)
    ap.add_argument("--samples", type=int, default=16)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--backends", help="comma-separated names (default: verify's)")
    args = ap.parse_args(argv)
    backends = tuple(args.backends.split(",")) if args.backends else None
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        make_tiny(d / "tiny.pt")
        rng = np.random.default_rng(0)
        (d / "shards").mkdir()
        for i in range(args.shards):
            x = (rng.random((args.samples, args.steps, 1, 6, 6)) < 0.3).astype(np.uint8)
            save_inputs(d / "shards" / f"s{i:03d}.npz", x, rng.integers(0, 4, args.samples))
            if i == 0:
                save_inputs(d / "calib.npz", x)
        assert cli(["compile", str(d / "tiny.pt"), "--calib", str(d / "calib.npz"), "-o",
                    str(d / "b.build")]) == 0
        t0 = time.perf_counter()
        one = verify_dataset(d / "b.build", d / "shards", backends, fresh=True,
                             cache_dir=d / "c1", progress=False)
        t1 = time.perf_counter()
        many = verify_dataset(d / "b.build", d / "shards", backends, fresh=True,
                              cache_dir=d / "c2", workers=args.workers, progress=False)
        t2 = time.perf_counter()

        def strip(rep):
            doc = rep.to_json()
            for v in doc["backends"].values():
                v.pop("wall_s")
            return json.dumps(doc)
        same = strip(one) == strip(many)
    n = one.samples
    print(f"data set: {args.shards} shards x {args.samples} samples x {args.steps} steps, "
          f"backends {','.join(one.backends)}")
    print(f"one process:        {t1 - t0:7.2f} s ({n / (t1 - t0):.2f} samples/s)")
    print(f"{args.workers} local workers:    {t2 - t1:7.2f} s ({n / (t2 - t1):.2f} samples/s, "
          "cluster start-up included)")
    print(f"speed-up: {(t1 - t0) / (t2 - t1):.2f}x; reports identical (wall times apart): "
          f"{same}")
    if not same:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
