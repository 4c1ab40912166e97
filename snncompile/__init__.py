"""snncompile: compile trained spiking neural networks to Loihi fixed point, simulate them
bit-accurately, run them on Lava, and verify that all of them agree spike for spike."""
from .backends.lava import compat as _lava_compat

_lava_compat.install()

__version__ = "0.1.0"
