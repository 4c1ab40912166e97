"""Everything Lava-specific: the lowering of a compiled graph to Lava processes (run.py),
the process models snncompile adds (procs.py, coproc.py) and the import fix for lava-nc /
lava-dl on this Python (compat.py). Importing this package imports no Lava module."""
