"""Command-line argument checks shared by the sub-commands: one line naming the option, the
value and what is expected (snncompile.errors: exit 2)."""
from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

from .errors import InputFileError

MODEL_SUFFIXES = (".pt", ".pth", ".ckpt", ".nir", ".net", ".h5", ".hdf5")

#: The file extensions each export format writes.
EXPORT_SUFFIXES = {"nir": (".nir",), "netx": (".net", ".h5", ".hdf5")}


def check_build_dir(path) -> None:
    """A build argument that is a model file (or any file) says so, and how to compile it."""
    p = Path(path)
    if p.is_file():
        if p.suffix.lower() in MODEL_SUFFIXES:
            raise InputFileError(
                f"{p}: is a model file, not a build directory; compile it first: "
                f"snncompile compile {p} --calib CALIB.npz -o {p.with_suffix('.build')}")
        raise InputFileError(f"{p}: is a file, not a build directory (written by "
                             "`snncompile compile ... -o DIR`)")


@contextmanager
def naming(option: str, path):
    """Errors about the file `path` (one line starting with the path) name `option` too."""
    try:
        yield
    except InputFileError as exc:
        text = str(exc)
        if path is not None and text.startswith(str(Path(path))):
            raise InputFileError(f"{option} {text}") from None
        raise


def check_suffix(option: str, path, allowed: tuple[str, ...], what: str) -> None:
    """`path` must end in one of `allowed` (so `export --format netx -o conv.txt` is refused
    rather than writing HDF5 into a .txt file)."""
    suffix = Path(path).suffix.lower()
    if suffix not in allowed:
        raise InputFileError(f"{option} {path}: {what} must be written to a "
                             f"{' / '.join(allowed)} file, not '{suffix or 'no extension'}'")


def default_run_output(inputs, build, backend: str) -> Path:
    """`run` without -o: beside the inputs file, named after inputs, build and backend
    (the build directory is left as `compile` wrote it)."""
    inp, b = Path(inputs), Path(build)
    name = b.name[:-len(".build")] if b.name.endswith(".build") else b.name
    return inp.with_name(f"{inp.stem}.{name or 'build'}.{backend}.npz")
