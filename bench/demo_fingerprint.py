"""Behaviour-preservation check: run `make demo`'s three scripts and fingerprint what they
write and print.

    python bench/demo_fingerprint.py record    # writes bench/demo_fingerprint.json
    python bench/demo_fingerprint.py check     # runs again, compares, exit 1 on a difference

The fingerprint holds the sha256 of every file the demos write inside a build directory
(out/**/*.build/**, those written during the run: builds other commands left in out/
are not counted) and every line the demos print, with wall-clock times (a number
followed by "s" or "ms" after "in", "time", or in a timing column) replaced by "<t>",
since those change from run to run and are not behaviour, and the checkout's path by
"<repo>" (the recording may come from another clone). Everything else must be
byte-identical: a restructuring that changes a build file or a printed number fails.
Takes as long as `make demo` (several minutes on 2 cores).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RECORD = ROOT / "bench" / "demo_fingerprint.json"
DEMOS = ("examples/demo.py", "examples/attention_demo.py", "examples/sdnn_demo.py")
# wall-clock durations: "12 s", "3.4 s", "0.8 ms", "(2.1 s)", "total time 93 s", "in 4.0 s"
_TIME = re.compile(r"(?<![\w.])\d+(\.\d+)?(e[-+]?\d+)?\s?(s|ms|min)\b")
_RATE = re.compile(r"(?<![\w.])\d+(\.\d+)?\s?(samples|steps)/s\b")


def normalise(line: str) -> str:
    """Wall-clock times -> <t>, rates -> <rate>, this checkout's path -> <repo>."""
    line = line.rstrip().replace(str(ROOT), "<repo>")
    return _RATE.sub("<rate>", _TIME.sub("<t>", line))


def run_demos(out: Path) -> dict:
    env = dict(os.environ, PYTHONPATH=str(ROOT), SNNCOMPILE_PROGRESS="0")
    started = time.time() - 1.0       # builds other commands left in out/ are not the demos'
    printed = {}
    for demo in DEMOS:
        print(f"running {demo} ...", file=sys.stderr, flush=True)
        proc = subprocess.run([sys.executable, demo], cwd=ROOT, env=env, text=True,
                              capture_output=True)
        if proc.returncode != 0:
            sys.stderr.write(proc.stdout[-4000:] + proc.stderr[-4000:])
            raise SystemExit(f"{demo} exited {proc.returncode}")
        printed[demo] = [normalise(x) for x in proc.stdout.splitlines()]
    files = {}
    for path in sorted(out.rglob("*")):
        rel = path.relative_to(out).as_posix()
        if path.is_file() and any(part.endswith(".build") for part in rel.split("/")[:-1]) \
                and path.stat().st_mtime >= started:
            files[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
    return {"build_files": files, "printed": printed}


def compare(old: dict, new: dict) -> list[str]:
    diffs = []
    for rel in sorted(set(old["build_files"]) | set(new["build_files"])):
        a, b = old["build_files"].get(rel), new["build_files"].get(rel)
        if a != b:
            diffs.append(f"build file {rel}: {a or 'absent'} -> {b or 'absent'}")
    for demo in DEMOS:
        a, b = old["printed"].get(demo, []), new["printed"].get(demo, [])
        for i in range(max(len(a), len(b))):
            x = a[i] if i < len(a) else "<absent>"
            y = b[i] if i < len(b) else "<absent>"
            if x != y:
                diffs.append(f"{demo} line {i + 1}: {x!r} -> {y!r}")
    return diffs


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("mode", choices=("record", "check"))
    args = ap.parse_args()
    new = run_demos(ROOT / "out")
    if args.mode == "record":
        RECORD.write_text(json.dumps(new, indent=1, sort_keys=True) + "\n")
        print(f"recorded {len(new['build_files'])} build files and "
              f"{sum(map(len, new['printed'].values()))} printed lines in {RECORD}")
        return 0
    diffs = compare(json.loads(RECORD.read_text()), new)
    for d in diffs[:200]:
        print(d)
    print(f"{len(new['build_files'])} build files, "
          f"{sum(map(len, new['printed'].values()))} printed lines: "
          + ("identical to the recording" if not diffs else f"{len(diffs)} differences"))
    return 1 if diffs else 0


if __name__ == "__main__":
    sys.exit(main())
