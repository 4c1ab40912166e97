"""Time: the one place that says when each node of a compiled graph computes what.

Every backend (simulator, integer reference, Lava, netx in Lava), verify's first-divergence
search and the mapper's latency ask this module instead of computing depths and offsets
themselves.

Definitions (the chip's, and Lava's):

* **depth** of a node: the number of synapse nodes (`is_synapse`: FxDense, FxConv2d) on the
  longest path from the input to it. A synapse delivers its result one step after it
  receives its input, so a node at depth d sees input frame t at **global** step t + d.
* **local** step t of a node at depth d is global step t + d: in local time every node
  computes the delay-free recurrence the float model was trained with. All backends
  return values in local time, shape (N, T, *shape).
* **one sample** takes T local steps; its last node finishes at global step
  T - 1 + max depth, so a sample on its own runs `global_steps = T + max depth` steps.
* **per-sample reset**: a node that resets (FxLIF) zeroes its state right before it
  integrates its first input of a sample, i.e. at its local step 0. Nodes with
  `runs_in_global_time` (sigma-delta) never reset; they run from global step 0 and only
  their outputs are read in local time (window [depth, depth + T)).
* **a stream of samples** (Lava runs N samples back to back): sample n's frame t enters at
  stream step n*T + t; the stream lasts N*T + max depth steps. Lava numbers steps from 1,
  so a node at depth d computes local step t of sample n at Lava time step
  n*T + t + d + 1, and resets when time_step % T == (d + 1) % T.
* a loop delay (FxDelay, the top-down attention loop) reads, at its target's local step t,
  what its source produced at local step t - latency (`init` before that).
"""
from __future__ import annotations

import dataclasses
from typing import Mapping

LAVA_FIRST_STEP = 1
"""Lava's first time step is 1: a RingBuffer sends frame t at time step t + 1."""


@dataclasses.dataclass(frozen=True)
class Timing:
    """When every node of one graph computes, for windows of `steps` local steps."""

    steps: int                       # T: local steps per sample
    depth: Mapping[str, int]         # node name -> depth

    @property
    def max_depth(self) -> int:
        return max(self.depth.values(), default=0)

    @property
    def global_steps(self) -> int:
        """Steps one sample needs on its own: T + max depth."""
        return self.steps + self.max_depth

    def stream_steps(self, samples: int) -> int:
        """Steps `samples` samples need back to back: N*T + max depth."""
        return samples * self.steps + self.max_depth

    def local(self, name: str, global_step: int) -> int:
        """The local step node `name` computes at `global_step` (may be outside [0, T))."""
        return global_step - self.depth[name]

    def to_global(self, name: str, local_step: int) -> int:
        return local_step + self.depth[name]

    def active(self, name: str, global_step: int) -> bool:
        """True when `global_step` falls in node `name`'s local window [0, T)."""
        return 0 <= global_step - self.depth[name] < self.steps

    def window(self, name: str) -> slice:
        """The global steps [depth, depth + T) that hold node `name`'s local window."""
        d = self.depth[name]
        return slice(d, d + self.steps)

    def lava_start(self, name: str) -> int:
        """Lava time step at which node `name` computes local step 0 of sample 0."""
        return self.depth[name] + LAVA_FIRST_STEP

    def lava_reset_offset(self, name: str) -> int:
        """`reset_offset` of a Lava LIFReset at node `name` (reset_interval = T)."""
        return (self.depth[name] + LAVA_FIRST_STEP) % self.steps


def timing(graph, steps: int) -> Timing:
    """The Timing of `graph` for windows of `steps` local steps (depths from the graph's
    cached order; see `Graph.depth`)."""
    return Timing(int(steps), {name: graph.depth(name) for name in graph.order()})


def loop_source_step(delay, local_step: int) -> int:
    """The local step of its source whose value loop delay `delay` (FxDelay) passes on at
    its target's local step `local_step`: local_step - latency (negative: `delay.init`)."""
    return local_step - delay.latency
