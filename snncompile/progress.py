"""Progress of long work, on stderr only (stdout carries tables and JSON).

One helper for every stage that can take more than a couple of seconds (compile stages,
calibration runs, the reference stage of verify, each backend):

- on a terminal: a tqdm bar;
- not on a terminal (a log, CI, a pipe): one line `snncompile: progress: DESC N/TOTAL UNIT
  (P%), T s` at most every `interval` seconds (default 5; SNNCOMPILE_PROGRESS_INTERVAL
  overrides it, 0 prints every update), a heartbeat while one long update runs, and a
  closing `... done in T s` line when any line was printed; work shorter than the interval
  prints nothing;
- off after `set_quiet(True)` (the CLI's --quiet).

Periodic lines are printed only when the command line turned them on (`enable_lines()`), so
that the library stays silent in a log unless asked; bars on a terminal follow the caller's
`enabled` flag as before.

    with progress.bar(len(x), "simulate", "sample") as p:
        for chunk in ...:
            p.update(len(chunk))
    with progress.stages(["import", "quantise"], "compile") as s:
        s.start("import"); ...; s.start("quantise"); ...
"""
from __future__ import annotations

import os
import sys
import threading
import time
from contextlib import contextmanager

_QUIET = False
_LINES = False


def set_quiet(quiet: bool) -> None:
    """Silence every bar and progress line (the CLI's --quiet)."""
    global _QUIET
    _QUIET = bool(quiet)


def enable_lines(on: bool = True) -> None:
    """Print periodic one-line progress when stderr is not a terminal (the CLI does)."""
    global _LINES
    _LINES = bool(on)


def interval_s() -> float:
    try:
        return max(0.0, float(os.environ.get("SNNCOMPILE_PROGRESS_INTERVAL", "5")))
    except ValueError:
        return 5.0


def _tty() -> bool:
    try:
        return bool(sys.stderr.isatty())
    except (AttributeError, ValueError):
        return False


class Progress:
    """A bar (terminal), periodic lines (no terminal, CLI) or nothing."""

    def __init__(self, total: int | None, desc: str, unit: str = "it",
                 enabled: bool = True, leave: bool = True):
        self.total, self.desc, self.unit = total, desc, unit
        self.n, self.note = 0, ""
        self.t0 = self._last = time.perf_counter()
        self._printed = False
        self._bar = self._thread = None
        self._stop = threading.Event()
        self._lock = threading.Lock()
        if not enabled or _QUIET:
            self.mode = "off"
        elif _tty():
            from tqdm import tqdm
            self.mode = "bar"
            self._bar = tqdm(total=total, desc=desc, unit=unit, file=sys.stderr,
                             leave=leave, dynamic_ncols=True)
        elif _LINES:
            self.mode = "lines"
            self.every = interval_s()
            if self.every > 0:
                self._thread = threading.Thread(target=self._beat, daemon=True)
                self._thread.start()
        else:
            self.mode = "off"

    # -- reporting
    def _line(self) -> str:
        if self.total:
            pct = 100.0 * self.n / self.total
            done = f"{self.n:,}/{self.total:,} {self.unit}{'' if self.total == 1 else 's'} " \
                   f"({pct:.0f}%)"
        else:
            done = f"{self.n:,} {self.unit}{'' if self.n == 1 else 's'}"
        note = f", {self.note}" if self.note else ""
        return f"snncompile: progress: {self.desc} {done}{note}, " \
               f"{time.perf_counter() - self.t0:.1f} s"

    def _emit(self, text: str) -> None:
        with self._lock:
            print(text, file=sys.stderr, flush=True)
            self._printed = True
            self._last = time.perf_counter()

    def _beat(self) -> None:
        while not self._stop.wait(min(self.every, 1.0)):
            if time.perf_counter() - self._last >= self.every:
                self._emit(self._line())

    def update(self, k: int = 1, note: str | None = None) -> None:
        self.n += k
        if note is not None:
            self.note = note
        if self.mode == "bar":
            if note is not None:
                self._bar.set_postfix_str(note, refresh=False)
            self._bar.update(k)
        elif self.mode == "lines" and \
                (self.every == 0 or time.perf_counter() - self._last >= self.every):
            self._emit(self._line())

    def set_note(self, note: str) -> None:
        """What is running now (a stage name), shown with the count."""
        self.update(0, note)

    def close(self) -> None:
        if self.mode == "bar":
            self._bar.close()
        elif self.mode == "lines":
            self._stop.set()
            if self._thread is not None:
                self._thread.join()
            if self._printed:
                self.note = ""
                self._emit(f"snncompile: progress: {self.desc} done in "
                           f"{time.perf_counter() - self.t0:.1f} s")
        self.mode = "off"

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def bar(total: int | None, desc: str, unit: str = "it", enabled: bool = True,
        leave: bool = True) -> Progress:
    return Progress(total, desc, unit, enabled, leave)


def track(iterable, desc: str, unit: str = "it", enabled: bool = True, total=None):
    """Iterate with progress."""
    if total is None:
        try:
            total = len(iterable)
        except TypeError:
            total = None
    with Progress(total, desc, unit, enabled) as p:
        for item in iterable:
            yield item
            p.update(1)


class Stages:
    """Named stages of one command as one bar: `start(name)` finishes the previous one."""

    def __init__(self, names: list[str], desc: str, enabled: bool = True):
        self.names = list(names)
        self.p = Progress(len(self.names), desc, "stage", enabled, leave=False)
        self.current: str | None = None

    def start(self, name: str) -> None:
        """Stage `name` begins (stages skipped on the way count as done)."""
        done = self.names.index(name) if name in self.names else self.p.n
        self.p.update(max(0, done - self.p.n), name)
        self.current = name

    def close(self) -> None:
        if self.current is not None:
            self.p.update(self.p.total - self.p.n, "")
        self.p.close()


@contextmanager
def stages(names: list[str], desc: str, enabled: bool = True):
    s = Stages(names, desc, enabled)
    try:
        yield s
    finally:
        s.close()


def cli_run(command, args):
    """Run a CLI sub-command with the command line's setting (periodic lines when stderr is
    not a terminal; nothing with --quiet), then restore the library's (so that a program
    calling `cli.main` twice, or tests, see no state left behind)."""
    global _QUIET, _LINES
    saved = _QUIET, _LINES
    quiet = bool(getattr(args, "quiet", False))
    _QUIET, _LINES = quiet, not quiet
    try:
        return command(args)
    finally:
        _QUIET, _LINES = saved
