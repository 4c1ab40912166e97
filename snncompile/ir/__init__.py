"""Intermediate representation: typed nodes and the graph that holds them."""
from .graph import Graph, graphs_equal, load_npz, save_npz_deterministic
from .nodes import (ATTENTION_PARTS, FIXED_TYPES, FLOAT_TYPES, LIF, NODE_TYPES, SIGNAL_KINDS,
                    Attention, AvgPool2d, Conv2d, Dense, Flatten, FxConv2d, FxCoproc, FxCoprocOut,
                    FxDelay, FxDense, FxGate, FxLI, FxLIF, FxSigmaDelta, Input, LI, NEURON_TYPES,
                    Node, Output, READOUT_DECISIONS, SumPool2d, TopDown, Delay, Gate,
                    RecDense, FxRecDense)

__all__ = ["ATTENTION_PARTS",
           "Attention", "Graph", "graphs_equal", "load_npz", "save_npz_deterministic", "Node",
           "Input", "Dense", "Conv2d", "SumPool2d", "AvgPool2d", "Flatten", "LIF", "Output",
           "FxDense", "FxConv2d", "FxLIF", "FxGate", "FxCoproc", "FxCoprocOut", "FxDelay",
           "FxSigmaDelta", "LI", "FxLI", "READOUT_DECISIONS", "TopDown", "Delay", "Gate",
           "RecDense", "FxRecDense",
           "NODE_TYPES", "NEURON_TYPES",
           "FLOAT_TYPES", "FIXED_TYPES", "SIGNAL_KINDS"]
