"""Mapping a compiled graph onto the chip: the neurocore / co-processor assignment
(coproc_assign.py), splitting layers into per-core blocks (split.py) and placing blocks on
cores and chips (place.py)."""
