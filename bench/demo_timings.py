"""Time `make demo` the way a new user meets it: a fresh clone, the install, each demo script.

    python bench/demo_timings.py            # clone HEAD into a temp dir, time `make venv`
                                            # and each script `make demo` runs
    python bench/demo_timings.py --here     # time the scripts in this checkout (no install)
    python bench/demo_timings.py --json T.json

Wall times depend on what else the machine runs, so every row carries the load average
sampled every 2 s while it ran (mean and peak) next to the machine's core count; compare rows
only at similar load. The README's demo timings are this script's output.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def demo_scripts(makefile: Path) -> list[str]:
    """The scripts the Makefile's `demo` target runs, in order (one place: the Makefile)."""
    lines = makefile.read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("demo:"))
    scripts = []
    for line in lines[start + 1:]:
        if not line.startswith("\t"):
            break
        m = re.search(r"\$\(PY\)\s+(\S+\.py)", line)
        if m:
            scripts.append(m.group(1))
    return scripts


class LoadSampler:
    """Load average (1 min) every `period` s while a step runs."""

    def __init__(self, period: float = 2.0):
        self.period, self.samples = period, []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            self.samples.append(os.getloadavg()[0])
            self._stop.wait(self.period)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def timed(label: str, cmd: list[str], cwd: Path) -> dict:
    print(f"[demo_timings] {label}: {' '.join(cmd)}", file=sys.stderr, flush=True)
    t0 = time.perf_counter()
    with LoadSampler() as load:
        proc = subprocess.run(cmd, cwd=cwd, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode:
        tail = proc.stderr.strip().splitlines()[-3:]
        raise SystemExit(f"demo_timings: {label} failed (exit {proc.returncode}): "
                         + " | ".join(tail))
    samples = load.samples or [os.getloadavg()[0]]
    return {"step": label, "wall_s": round(wall, 1),
            "load_mean": round(sum(samples) / len(samples), 1),
            "load_peak": round(max(samples), 1)}


def run(here: bool) -> tuple[list[dict], str]:
    if here:
        work, where = ROOT, f"this checkout ({ROOT})"
        if not (ROOT / ".venv" / ".installed").exists():
            raise SystemExit("demo_timings: --here needs an installed .venv (make venv)")
    else:
        work = Path(tempfile.mkdtemp(prefix="snncompile-demo-timings-"))
        subprocess.run(["git", "clone", "-q", str(ROOT), str(work)], check=True)
        where = f"a fresh clone of {_head()}"
    rows = []
    try:
        if not here:
            rows.append(timed("install (make venv)", ["make", "venv"], work))
        for script in demo_scripts(work / "Makefile"):
            rows.append(timed(script, [str(work / ".venv" / "bin" / "python"), script], work))
    finally:
        if not here:
            shutil.rmtree(work, ignore_errors=True)
    return rows, where


def _head() -> str:
    return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                          capture_output=True, text=True).stdout.strip()


def table(rows: list[dict], where: str) -> str:
    demo = sum(r["wall_s"] for r in rows if not r["step"].startswith("install"))
    out = [f"`make demo` timed on {where}, {os.cpu_count()} cores "
           f"(load average sampled every 2 s):", "",
           "| step | wall s | load mean | load peak |", "|---|---|---|---|"]
    out += [f"| {r['step']} | {r['wall_s']:.0f} | {r['load_mean']} | {r['load_peak']} |"
            for r in rows]
    out.append(f"| demo scripts together | {demo:.0f} | | |")
    return "\n".join(out)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--here", action="store_true",
                    help="time the demo scripts in this checkout instead of a fresh clone")
    ap.add_argument("--json", type=Path, help="also write the rows as JSON")
    args = ap.parse_args(argv)
    rows, where = run(args.here)
    print(table(rows, where))
    if args.json:
        args.json.write_text(json.dumps({"where": where, "cores": os.cpu_count(),
                                         "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
