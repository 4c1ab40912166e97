"""Compiler passes: fold, quantize, split, place (see each module)."""
