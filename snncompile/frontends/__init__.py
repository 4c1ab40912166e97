"""Frontends: turn a trained model file into a float intermediate graph."""
from .torch_checkpoint import graph_from_model, import_checkpoint

__all__ = ["import_checkpoint", "graph_from_model"]
