"""Exporters: write a float intermediate graph in other formats (NIR)."""
from .nir_export import export_nir, write_nir

__all__ = ["export_nir", "write_nir"]
