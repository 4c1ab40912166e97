"""Everything Lava-specific: the lowering of a compiled graph to Lava processes, one rule
per node type (lower.py, table `LOWER`), our (C, H, W) versus Lava's (W, H, C) layout
(layout.py), starting, stepping and shutting Lava down (session.py, also used by the netx
runner; a stalled run is stopped and retried), its wall-time estimate (cost.py), the
`lava` backend and its entry points `run_lava` / `lava_state` (run.py), the
process models snncompile adds (procs.py, coproc.py) and the import fix for lava-nc /
lava-dl on this Python (compat.py). Importing this package imports no Lava module."""
