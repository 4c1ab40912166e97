"""The Python 3.11 import fix for lava's var_model (snncompile/_lava_compat.py)."""
from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import textwrap
import types

import pytest

from snncompile.backends.lava import compat as _lava_compat

HAS_LAVA = importlib.util.find_spec("lava") is not None
needs_lava = pytest.mark.skipif(not HAS_LAVA, reason="lava-nc is not installed")


def test_rewrite_replaces_defaults_and_imports_field():
    src = textwrap.dedent('''\
        """Doc."""
        from __future__ import annotations

        from dataclasses import dataclass


        @dataclass
        class ByteEncoder:
            base: int = 0


        @dataclass
        class CoreEncoder:
            x: ByteEncoder = ByteEncoder()
            y: ByteEncoder=ByteEncoder()
        ''')
    out = _lava_compat.rewrite(src)
    assert "ByteEncoder()" not in out
    assert out.count("field(default_factory=ByteEncoder)") == 2
    assert len(out.splitlines()) == len(src.splitlines())  # tracebacks keep line numbers
    assert out.splitlines()[3] == ("from dataclasses import field; "
                                   "from dataclasses import dataclass")
    ns: dict = {}
    exec(compile(out, "<patched>", "exec"), ns)
    a, b = ns["CoreEncoder"](), ns["CoreEncoder"]()
    assert a.x == ns["ByteEncoder"]() and a.x is not b.x


def test_rewrite_is_noop_without_pattern():
    fixed = ("from dataclasses import dataclass, field\n"
             "x: ByteEncoder = field(default_factory=ByteEncoder)\n")
    assert _lava_compat.rewrite(fixed) is None
    assert _lava_compat.rewrite("") is None


def test_rewrite_keeps_existing_field_import():
    src = ("from dataclasses import dataclass, field\n"
           "class C:\n    x: ByteEncoder = ByteEncoder()\n")
    out = _lava_compat.rewrite(src)
    assert out.splitlines()[0] == "from dataclasses import dataclass, field"
    assert "field(default_factory=ByteEncoder)" in out


def test_install_is_idempotent(monkeypatch):
    monkeypatch.setattr(sys, "meta_path", [f for f in sys.meta_path
                                           if not getattr(f, "_snncompile_lava_compat", 0)])
    _lava_compat.install()
    _lava_compat.install()
    n = sum(bool(getattr(f, "_snncompile_lava_compat", 0)) for f in sys.meta_path)
    assert n == (1 if sys.version_info >= (3, 11) else 0)


def test_install_is_noop_before_311(monkeypatch):
    monkeypatch.setattr(sys, "meta_path", [f for f in sys.meta_path
                                           if not getattr(f, "_snncompile_lava_compat", 0)])
    monkeypatch.setattr(sys, "version_info", (3, 10, 12, "final", 0))
    _lava_compat.install()
    assert not _lava_compat.installed()


def test_finder_ignores_other_modules():
    finder = _lava_compat._LavaVarModelFinder()
    for name in ("json", "lava", "lava.magma.compiler.var_model_x",
                 "lava.magma.compiler.compiler", "snncompile"):
        assert finder.find_spec(name, None) is None


# Runs in a fresh interpreter with bytecode writing ON and a private pycache prefix, with a
# stale, valid-looking .pyc for var_model planted where a normal import would read it.
_SUBPROCESS = r'''
import importlib.util, importlib._bootstrap_external as be, os, sys
prefix = sys.pycache_prefix
spec = importlib.util.find_spec("lava.magma.compiler")
src = os.path.join(list(spec.submodule_search_locations)[0], "var_model.py")
pyc = importlib.util.cache_from_source(src)
assert pyc.startswith(prefix), pyc
os.makedirs(os.path.dirname(pyc), exist_ok=True)
st = os.stat(src)
stale = compile("STALE = True", src, "exec")
with open(pyc, "wb") as f:
    f.write(be._code_to_timestamp_pyc(stale, st.st_mtime, st.st_size))
before = os.stat(pyc).st_mtime_ns, os.path.getsize(pyc)

import snncompile  # installs the finder
import lava.magma.compiler.var_model as vm
import lava.magma.compiler.compiler  # the rest of Lava's compiler imports too
assert not hasattr(vm, "STALE"), "stale .pyc was used"
assert type(vm.__loader__).__name__ == "_PatchedSourceLoader"
vm.CoreEncoder()
assert (os.stat(pyc).st_mtime_ns, os.path.getsize(pyc)) == before, ".pyc was rewritten"
others = [os.path.join(d, f) for d, _, fs in os.walk(prefix) for f in fs]
assert any("compiler.cpython" in p for p in others), "sanity: other modules cached"
assert not [p for p in others if "var_model" in os.path.basename(p) and p != pyc], others
print("OK")
'''


@needs_lava
def test_lava_imports_without_touching_bytecode(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPYCACHEPREFIX"] = str(tmp_path / "pyc")
    res = subprocess.run([sys.executable, "-c", _SUBPROCESS], env=env, capture_output=True,
                         text=True, timeout=120)
    assert res.returncode == 0 and "OK" in res.stdout, res.stderr[-3000:]


@needs_lava
def test_lava_import_fails_without_fix():
    """Guards the premise: if this starts passing without the fix, upstream fixed it."""
    code = "import lava.magma.compiler.var_model"
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120)
    if sys.version_info >= (3, 11):
        assert res.returncode != 0 and "default_factory" in res.stderr


_BROKEN = ("from __future__ import annotations\nfrom dataclasses import dataclass\n\n\n"
           "@dataclass\nclass ByteEncoder:\n    base: int = 0\n\n\n"
           "@dataclass\nclass CoreEncoder:\n    x: ByteEncoder = ByteEncoder()\n")


def test_finder_patches_a_broken_source_and_skips_a_fixed_one(tmp_path, monkeypatch):
    finder = _lava_compat._LavaVarModelFinder()
    (tmp_path / "var_model.py").write_text(_BROKEN)
    spec = finder.find_spec(_lava_compat.MODULE, [str(tmp_path)])
    assert isinstance(spec.loader, _lava_compat._PatchedSourceLoader)
    mod = types.ModuleType("fake_var_model")  # dataclasses looks its module up
    monkeypatch.setitem(sys.modules, mod.__name__, mod)
    exec(spec.loader.get_code(_lava_compat.MODULE), mod.__dict__)
    assert mod.CoreEncoder().x == mod.ByteEncoder()
    (tmp_path / "var_model.py").write_text(_lava_compat.rewrite(_BROKEN))  # "upstream fix"
    assert finder.find_spec(_lava_compat.MODULE, [str(tmp_path)]) is None
    assert not list(tmp_path.rglob("*.pyc"))
