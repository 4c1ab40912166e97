"""Lava processes made for tests, each in a module of its own directory: Lava finds a
process's models by importing every module beside the process's file."""
