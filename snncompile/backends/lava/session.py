"""Running Lava networks and shutting Lava down: the one place that starts, steps and stops
Lava, used by the lowering backend (run.py) and by the netx runner
(snncompile.formats.netx.run_lava).

    require_lava()
    with lava_session("lava run failed") as session:   # always shuts Lava down
        ...build and connect processes...
        session.start(any_process, models)             # what to run, pinned models
        session.run(n_steps, progress=True)
        ...read Vars (Var.get) here, before the shutdown...

Lava's CPU simulation forks one worker per process and costs about 2 ms per step at least;
a run left open keeps its workers alive, and after a failure Lava's own `stop()` can hang,
so `lava_session` always shuts down (forced after a failure) and turns Lava's bare
Exceptions into one-line BackendErrors naming the first worker exception.

Lava's multiprocess runtime can deadlock: seen once in this project's test suite on a busy
2-core machine, every worker idle in a channel wait at step 1 of a network that runs in
7 s alone (and passed six runs in a row alone afterwards). So stepping never waits
forever (Lava's compile and worker start, and its stop(), are not guarded): each `run` is
started non-blocking and given `stall_limit(steps)` seconds (a floor plus
20x the estimated or the slowest measured time per step); past it LavaStallError is raised
and the session is shut down by force. `retry_stalled` runs a whole Lava job (build, run,
read back) again once after a stall, saying so on stderr.
"""
from __future__ import annotations

import math
import multiprocessing as mp
import sys
import time
from contextlib import contextmanager
from typing import Iterator

from snncompile.backends.lava import compat as _lava_compat
from snncompile.errors import BackendError, InputFileError, UnsupportedError


STALL_FLOOR_S = 120.0
"""Seconds a Lava run may take beyond 20x its expected time before it counts as stalled."""
STALL_FACTOR = 20.0


class LavaStallError(BackendError):
    """A Lava run did not finish within its stall limit (seen when its runtime deadlocked;
    a run merely far slower than estimated would count too)."""


def require_lava() -> None:
    """Import Lava (with the Python 3.11 fix installed) or raise BackendError."""
    _lava_compat.install()
    try:
        with _fork_start_method():
            import lava.magma.core.run_configs  # noqa: F401
            import lava.magma.runtime.message_infrastructure.multiprocessing  # noqa: F401
            import lava.proc.conv.process  # noqa: F401
            import lava.proc.dense.process  # noqa: F401
            import lava.proc.lif.process  # noqa: F401
    except ImportError:
        raise BackendError("lava-nc is not installed: run `make venv`") from None
    except BackendError:
        raise
    except Exception as exc:
        raise BackendError(f"lava-nc failed to import: {one_line(exc)}") from exc


@contextmanager
def _fork_start_method():
    """Lava calls `mp.set_start_method('fork')` when first imported
    (lava/magma/runtime/message_infrastructure/multiprocessing.py:47). That raises
    'context has already been set' as soon as anything fixed the start method before, even
    a plain `multiprocessing.get_start_method()`. Lava's workers rely on fork; if the method
    is already 'fork', let Lava's call be a no-op during its import."""
    current = mp.get_start_method(allow_none=True)
    if current is None or "lava.magma.runtime.message_infrastructure.multiprocessing" \
            in sys.modules:
        yield
        return
    if current != "fork":
        raise BackendError(f"Lava needs the 'fork' multiprocessing start method, but it is "
                           f"already set to '{current}'; import snncompile's Lava backend "
                           "before anything sets it")
    original = mp.set_start_method

    def set_start_method(method, force=False):
        if method != "fork" or force:
            original(method, force)

    mp.set_start_method = set_start_method
    try:
        yield
    finally:
        mp.set_start_method = original


def one_line(exc: BaseException) -> str:
    """'Type: first line of the message' of an exception."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")


def over_samples(items, progress: bool, desc: str):
    """`items`, with a per-sample progress bar when `progress` is on."""
    if not progress:
        return items
    from snncompile.progress import track
    return track(items, desc, "sample")


class LavaSession:
    """One Lava network being run: `runner` (any process of the connected network; Lava
    compiles and starts the whole network at its first run) and `models` (process class and
    instance -> process model class, Lava's `exception_proc_model_map`)."""

    def __init__(self, step_s: float = 0.0, floor_s: float = STALL_FLOOR_S) -> None:
        self.runner = None
        self.models: dict = {}
        self.step_s = float(step_s)     # expected seconds per step (cost.py's estimate)
        self.floor_s = float(floor_s)
        self.steps_done = 0

    def stall_limit(self, steps: int) -> float:
        """Seconds `steps` steps may take before the run counts as stalled: the floor plus
        STALL_FACTOR x the expected time (the estimate or the slowest step measured so far,
        whichever is larger)."""
        return self.floor_s + STALL_FACTOR * steps * self.step_s

    def start(self, runner, models: dict | None = None) -> None:
        """Name the network to run and the models to pin; nothing runs yet."""
        self.runner = runner
        self.models = dict(models or {})

    def run(self, steps: int, *, progress: bool = False, desc: str = "lava") -> None:
        """Run `steps` more time steps (Loihi2SimCfg, fixed_pt); with `progress`, in ~5%
        chunks under a progress bar."""
        if self.runner is None:
            raise BackendError("lava session: run() before start()")
        if not progress:
            self._run(steps)
            return
        from snncompile.progress import bar as progress_bar

        chunk = max(1, math.ceil(steps / 20))  # ~5% per update
        with progress_bar(steps, desc, "step") as bar:
            done = 0
            while done < steps:
                k = min(chunk, steps - done)
                self._run(k)
                done += k
                bar.update(k)

    def _run(self, steps: int) -> None:
        from lava.magma.core.run_conditions import RunSteps
        from lava.magma.core.run_configs import Loihi2SimCfg

        cfg = Loihi2SimCfg(select_tag="fixed_pt", exception_proc_model_map=self.models)
        # non-blocking, so that a deadlocked runtime cannot hold us forever; the first
        # run() compiles and forks the workers before it returns
        self.runner.run(condition=RunSteps(num_steps=int(steps), blocking=False),
                        run_cfg=cfg)
        limit, t0 = self.stall_limit(steps), time.perf_counter()
        answers = self._runtime().service_to_runtime
        pause = 1e-4
        while not all(port.probe() for port in answers):
            waited = time.perf_counter() - t0
            if waited > limit:
                raise LavaStallError(
                    f"Lava did not finish steps {self.steps_done + 1}.."
                    f"{self.steps_done + steps} in {waited:.0f} s (limit {limit:.0f} s: "
                    f"{self.floor_s:.0f} s + {STALL_FACTOR:.0f}x {self.step_s:.3g} s/step), "
                    "so the run counts as stalled")
            time.sleep(pause)
            pause = min(2 * pause, 0.01)
        self.runner.wait()              # collects the answers (and raises a worker error)
        self.step_s = max(self.step_s, (time.perf_counter() - t0) / steps)
        self.steps_done += steps

    def _runtime(self):
        return getattr(self.runner, "runtime", None) if self.runner is not None else None

    def worker_error(self) -> str | None:
        """The first exception a Lava worker raised, in one line (Lava itself only says
        'See output above'); None when there is none or it cannot be read."""
        try:
            for actor in self._runtime()._messaging_infrastructure.actors:
                if actor.exception:
                    return one_line(actor.exception[0])
        except Exception:  # best effort: private Lava internals
            return None
        return None

    def shutdown(self, graceful: bool) -> None:
        """Stop the Lava runtime. After a failure, Lava's Runtime.stop() would wait forever
        for TERMINATED answers from runtime services that already exited
        (lava/magma/runtime/runtime.py:478-492), so terminate what is left and free the
        shared memory instead; then mark the runtime stopped so that
        AbstractProcess.__del__ (which calls stop()) cannot hang at garbage collection."""
        rt = self._runtime()
        if rt is None:
            return
        if graceful:
            try:
                self.runner.stop()
                return
            except Exception:  # fall through to the forced path
                pass
        try:
            infra = rt._messaging_infrastructure
            for actor in infra.actors:
                if not getattr(actor, "_is_done", True):
                    if actor.is_alive():
                        actor.terminate()
                    actor.join()
            if infra.smm is not None:
                infra.smm.shutdown()
            rt._watchdog_manager.stop()
        finally:
            rt._is_started = False
            rt._is_running = False


@contextmanager
def lava_session(failure: str = "lava run failed", graph=None,
                 floor_s: float = STALL_FLOOR_S) -> Iterator[LavaSession]:
    """A LavaSession that is always shut down on the way out (gracefully after success,
    forced after a failure or a stall). Our own one-line errors pass through; any other
    exception becomes BackendError(f"{failure}: <first worker exception or the exception>").
    graph: the network being run, whose estimated Lava time per step (cost.py) sets the
    stall limit (LavaSession.stall_limit); None: the floor alone."""
    from snncompile.backends.lava.cost import lava_seconds_per_sample
    step_s = lava_seconds_per_sample(graph, 1) if graph is not None else 0.0
    session = LavaSession(step_s=step_s, floor_s=floor_s)
    ok = False
    try:
        yield session
        ok = True
    except (UnsupportedError, BackendError, InputFileError):
        raise
    except Exception as exc:  # Lava raises bare Exceptions, its workers' ones re-wrapped
        raise BackendError(f"{failure}: {session.worker_error() or one_line(exc)}") from exc
    finally:
        session.shutdown(graceful=ok)


def retry_stalled(job, what: str = "Lava run", attempts: int = 2):
    """`job()` (one whole Lava job in its own `lava_session`: build, run, read back), run
    again from the start after a LavaStallError, at most `attempts` times in all; each
    retry is said on stderr. Lava's results do not depend on the attempt: its models are
    bit-accurate and the job starts from a fresh network."""
    for attempt in range(1, attempts + 1):
        try:
            return job()
        except LavaStallError as exc:
            if attempt == attempts:
                raise LavaStallError(f"{what}: {exc} ({attempts} attempts)") from None
            print(f"snncompile: warning: {what}: {exc}; starting it again "
                  f"(attempt {attempt + 1} of {attempts})", file=sys.stderr, flush=True)
