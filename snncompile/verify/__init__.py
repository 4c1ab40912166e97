"""Verification: backends compared with each other, spike for spike (compare.py), and the
compiled network compared with the float model the user trained (fidelity.py)."""
