"""Make lava-nc 0.10 importable on Python 3.11+, without touching site-packages.

Why: `lava/magma/compiler/var_model.py` declares dataclass fields such as
``x: ByteEncoder = ByteEncoder()``. Since Python 3.11 `dataclasses` rejects every unhashable
default (a non-frozen dataclass instance sets ``__hash__ = None``) with "mutable default ...
use default_factory", so ``import lava.magma.compiler.var_model`` - and with it every Lava
compile - fails. Upstream Lava has not released a fix for the version we pin.

What: `install()` puts a finder at the front of `sys.meta_path` that handles exactly that one
module. It reads the module's source, rewrites each ``: ByteEncoder = ByteEncoder()`` into
``: ByteEncoder = field(default_factory=ByteEncoder)`` (importing `field` on the line of the
first ordinary statement, so line numbers in tracebacks stay those of the file on disk) and
compiles it from source. Its loader overrides `get_code`, so the bytecode cache is bypassed
both ways: a stale unpatched ``__pycache__/var_model.*.pyc`` (pip writes one at install time)
is never read, and the patched code is never written where a normal import would find it.

Scope: a no-op on Python < 3.11 (the old code works there) and whenever the source no longer
contains the pattern (upstream fixed it; the normal import, with its cache, is then used).
Installing twice adds one finder. Lava starts its runtime workers with ``fork`` on POSIX
(`lava/magma/runtime/message_infrastructure/multiprocessing.py`, `mp.set_start_method('fork')`),
so the workers inherit both the finder and the already imported module; a ``spawn``ed worker
that imports `snncompile` first would install it again through `snncompile/__init__.py`.

Example::

    from snncompile import _lava_compat
    _lava_compat.install()
    import lava.magma.compiler.var_model  # works on 3.11
"""
from __future__ import annotations

import ast
import importlib.abc
import importlib.machinery
import importlib.util
import re
import sys

MODULE = "lava.magma.compiler.var_model"
_PATTERN = re.compile(r":(\s*)ByteEncoder(\s*)=(\s*)ByteEncoder\(\)")
_IMPORT = "from dataclasses import field; "


def rewrite(source: str) -> str | None:
    """Return `source` with ``ByteEncoder()`` defaults turned into default factories, or
    None when the pattern does not occur (nothing to fix).

    >>> rewrite("class A:\\n    x: ByteEncoder = ByteEncoder()\\n").splitlines()[1]
    '    x: ByteEncoder = field(default_factory=ByteEncoder)'
    """
    if not _PATTERN.search(source):
        return None
    patched = _PATTERN.sub(r":\1ByteEncoder\2=\3field(default_factory=ByteEncoder)", source)
    if _imports_field(patched):
        return patched
    # Prepend the import to the first statement that is neither the docstring nor a
    # `from __future__` import (those must stay first); same line keeps line numbers.
    tree = ast.parse(patched)
    body = list(tree.body)
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
            and isinstance(body[0].value.value, str):
        body = body[1:]
    while body and isinstance(body[0], ast.ImportFrom) and body[0].module == "__future__":
        body = body[1:]
    lines = patched.splitlines(keepends=True)
    if body and body[0].col_offset == 0:
        i = body[0].lineno - 1
        lines[i] = _IMPORT + lines[i]
    else:  # empty module or odd layout: append a new line (shifts line numbers by one)
        lines.append("\n" + _IMPORT.rstrip("; ") + "\n")
    return "".join(lines)


def _imports_field(source: str) -> bool:
    for node in ast.parse(source).body:
        if isinstance(node, ast.ImportFrom) and node.module == "dataclasses" \
                and any(a.name == "field" and a.asname is None for a in node.names):
            return True
    return False


class _PatchedSourceLoader(importlib.machinery.SourceFileLoader):
    """Loads the module from patched source; never reads or writes bytecode."""

    def __init__(self, fullname: str, path: str, source: str):
        super().__init__(fullname, path)
        self._patched = source

    def get_code(self, fullname):
        # Overriding get_code (not source_to_code) skips SourceLoader's .pyc lookup and its
        # _cache_bytecode call, so neither a stale nor a patched .pyc is involved.
        return compile(self._patched, self.path, "exec", dont_inherit=True)

    def get_source(self, fullname):
        return self._patched


class _LavaVarModelFinder(importlib.abc.MetaPathFinder):
    """Meta path finder that only answers for `MODULE`."""

    _snncompile_lava_compat = True  # marker that makes install() idempotent across reloads

    def find_spec(self, fullname, path=None, target=None):
        if fullname != MODULE:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or not isinstance(spec.loader, importlib.machinery.SourceFileLoader):
            return None
        try:
            source = importlib.util.decode_source(spec.loader.get_data(spec.origin))
        except OSError:
            return None
        patched = rewrite(source)
        if patched is None:  # fixed upstream: let the normal import (and its cache) run
            return None
        spec.loader = _PatchedSourceLoader(fullname, spec.origin, patched)
        return spec


def installed() -> bool:
    """True when the finder is on `sys.meta_path`."""
    return any(getattr(f, "_snncompile_lava_compat", False) for f in sys.meta_path)


def install() -> None:
    """Install the finder (Python >= 3.11 only; idempotent)."""
    if sys.version_info < (3, 11) or installed():
        return
    sys.meta_path.insert(0, _LavaVarModelFinder())
