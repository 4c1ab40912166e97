"""Exporters: write a float intermediate graph in other formats (NIR)."""
from snncompile.formats.nir.write import export_nir, write_nir

__all__ = ["export_nir", "write_nir"]
