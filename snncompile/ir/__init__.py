"""Intermediate representation: typed nodes and the graph that holds them."""
from .graph import Graph, graphs_equal, load_npz, save_npz_deterministic
from .nodes import (ATTENTION_PARTS, FIXED_TYPES, FLOAT_TYPES, LIF, NODE_TYPES, SIGNAL_KINDS,
                    Attention, AvgPool2d, Conv1d, Conv2d, Dense, Flatten, FxConv1d, FxConv2d,
                    FxCoproc, FxCoprocOut, FxDelay, FxDense, FxGate, FxLI, FxLIF, FxSigmaDelta,
                    Input, LI, NEURON_TYPES, Node, Output, READOUT_DECISIONS, SumPool2d,
                    SumPool1d, AvgPool1d, TopDown, Delay, Gate, NEURON_PARAMS, neuron_param, per_neuron,
                    RecDense, FxRecDense)

__all__ = ["ATTENTION_PARTS",
           "Attention", "Graph", "graphs_equal", "load_npz", "save_npz_deterministic", "Node",
           "Input", "Dense", "Conv2d", "Conv1d", "SumPool2d", "AvgPool2d", "SumPool1d",
           "AvgPool1d", "Flatten", "LIF",
           "Output", "FxDense", "FxConv2d", "FxConv1d", "FxLIF", "FxGate", "FxCoproc",
           "FxCoprocOut", "FxDelay",
           "FxSigmaDelta", "LI", "FxLI", "READOUT_DECISIONS", "TopDown", "Delay", "Gate",
           "RecDense", "FxRecDense",
           "NODE_TYPES", "NEURON_TYPES",
           "FLOAT_TYPES", "FIXED_TYPES", "SIGNAL_KINDS", "NEURON_PARAMS", "neuron_param",
           "per_neuron"]
