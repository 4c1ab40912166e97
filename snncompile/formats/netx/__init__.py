"""lava-dl netx HDF5: read (import to a graph), write (export a compiled graph), and run a
netx file with lava-dl's own loader in Lava (run_lava.py, the `netx` verify backend)."""
