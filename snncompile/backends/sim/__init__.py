"""Simulators: the bit-accurate fixed-point simulator and the float model evaluator."""
from .simulator import SimResult, Simulator, simulate

__all__ = ["SimResult", "Simulator", "simulate"]
