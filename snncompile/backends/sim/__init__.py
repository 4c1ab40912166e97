"""Simulators: the bit-accurate fixed-point simulator and the float model evaluator."""
from snncompile.backends.sim.simulator import SimResult, Simulator, simulate

__all__ = ["SimResult", "Simulator", "simulate"]
