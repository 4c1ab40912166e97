"""Energy and latency estimates of a mapped network from simulated event counts."""
from .model import E_AC_J, E_MAC_J, estimate_energy
from .report import EVENTS, EnergyReport

__all__ = ["estimate_energy", "EnergyReport", "EVENTS", "E_MAC_J", "E_AC_J"]
