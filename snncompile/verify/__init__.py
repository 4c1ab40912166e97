"""Verification: backends compared with each other, spike for spike (compare.py), and the
compiled network compared with the float model the user trained (fidelity.py)."""

_PUBLIC = {"verify": "compare", "VerifyReport": "compare", "decision": "compare",
           "Tolerance": "fidelity"}


def __getattr__(name):   # `from snncompile.verify import verify` without import cycles
    if name in _PUBLIC:
        import importlib
        return getattr(importlib.import_module(f"{__name__}.{_PUBLIC[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
