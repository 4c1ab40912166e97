"""PyTorch training layers whose float dynamics are exactly what the compiler deploys."""
from .layers import LIFLayer, SNN, spike_fn
from .checkpoint import load_checkpoint, save_checkpoint

__all__ = ["LIFLayer", "SNN", "spike_fn", "load_checkpoint", "save_checkpoint"]
