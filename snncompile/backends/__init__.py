"""Backends that execute a compiled (fixed-stage) graph. Lava is optional: import
`snncompile.backends.lava_backend` only when it is used; it raises BackendError if Lava is
missing."""
