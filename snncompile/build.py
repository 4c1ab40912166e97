"""The build directory: everything `compile` produced, written atomically and
deterministically (same inputs give byte-identical files).

    BUILD/
      manifest.json        format, version, target, source, sha256 of every file
      target.toml          the target description the build was compiled for
      graph.json           fixed-point graph (format: snncompile.ir.graph)
      arrays.npz           its integer arrays
      float/graph.json     float graph after pool folding (for float accuracy; absent for
                           models that arrive in fixed point, e.g. netx); an HTDA model's
                           includes its top-down loop (TopDown, Delay, Gate nodes)
      float/arrays.npz
      report.json          compile report for programs
      report.md            compile report for people
      mapping.json         core mapping: every block and core, utilisation, placement
      coproc/NAME.onnx     each co-processor partition as a standalone integer ONNX model
                           (attention models only; checked with onnx.checker)
      netx/network.net     a copy of the lava-dl netx file the build was compiled from
                           (`Build.source_copy`; the `netx` backend runs it; netx only)

(Builds of HTDA models written before the loop was part of the float graph also held
htda/model.pt, a copy of the checkpoint; they have no float/ and verify as "not checked".)

A build is untrusted input when it is loaded (it may come from anyone, or be edited and
re-hashed): the manifest must list every file the loader reads, by a relative path inside
the build, with its sha256; members must be regular files (no links, FIFOs or devices) of
bounded size; JSON is bounded in size and depth; and every integer of the fixed-point graph
is range-checked against the target's numerics (snncompile.ir.limits).
"""
from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import re
import shutil
import stat
import sys
from pathlib import Path

from .errors import InputFileError, OutputFileError
from .ir import Graph, load_npz
from .ir.limits import check_attr_types, check_fixed_graph, check_float_graph
from .safe_io import atomic_directory, recover_leftovers
from .target import TargetSpec, available_targets, load_target

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

FORMAT = "snncompile-build"
VERSION = 1

REQUIRED = ("target.toml", "graph.json", "arrays.npz", "report.json", "report.md")
"""Members every build has; `float/graph.json` and `float/arrays.npz` go together."""
MAX_MANIFEST_BYTES = 1 << 20
MAX_JSON_BYTES = 1 << 28
MAX_MEMBER_BYTES = 1 << 31
MAX_MEMBERS = 4096
MAX_JSON_DEPTH = 64
_PART = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-]{0,254}")
_SHA256 = re.compile(r"[0-9a-f]{64}")


def member_path_ok(name) -> bool:
    """A build member path: relative, `/`-separated, at most 4 parts, each
    identifier-like (so no `..`, no absolute path, no empty or hidden part)."""
    if not isinstance(name, str) or len(name) > 1024:
        return False
    parts = name.split("/")
    return len(parts) <= 4 and all(_PART.fullmatch(p) for p in parts)


@dataclasses.dataclass
class Build:
    graph: Graph
    float_graph: Graph | None  # None for models imported already in fixed point (netx)
    target: TargetSpec
    report: dict
    report_md: str = ""
    path: Path | None = None
    extra_files: dict = dataclasses.field(default_factory=dict)  # name -> JSON document
    extra_bytes: dict = dataclasses.field(default_factory=dict)  # relative path -> bytes
    members: dict = dataclasses.field(default_factory=dict)  # loaded: name -> sha256
    source_copy: bytes | None = None  # the netx file compiled from (member NETX_SOURCE)

    def save(self, path: str | Path) -> Path:
        """Write into `path` atomically (snncompile.safe_io.atomic_directory): a failure
        or a kill leaves any previous build untouched or recoverable; leftovers of an
        interrupted compile are cleaned up by the next one."""
        path = Path(path)
        recover_leftovers(path)
        if not path.is_symlink() and not _replaceable(path):
            raise OutputFileError(f"{path}: exists and is not a build directory; "
                                  "refusing to overwrite it")
        if path.name not in ("", ".", "..") and not path.is_symlink():
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise OutputFileError(f"{path.parent}: cannot create folder "
                                      f"({exc.strerror or type(exc).__name__})") from None
        with atomic_directory(path) as tmp:
            files = self._write(tmp)
        self.path, self.members = path, files    # as `load` would see them
        return path

    def _write(self, tmp: Path) -> dict[str, str]:
        """Write every member into `tmp`; return the manifest's {member: sha256}."""
        shutil.copyfile(self.target.path, tmp / "target.toml")
        self.graph.save(tmp)
        if self.float_graph is not None:
            (tmp / "float").mkdir()
            self.float_graph.save(tmp / "float")
        (tmp / "report.json").write_text(json.dumps(self.report, indent=1) + "\n")
        (tmp / "report.md").write_text(self.report_md)
        members = {**{n: (json.dumps(d, indent=1) + "\n").encode()
                      for n, d in self.extra_files.items()}, **self.extra_bytes}
        if self.source_copy is not None:
            if self.NETX_SOURCE in members:
                raise OutputFileError(f"{tmp}: build member {self.NETX_SOURCE} is the netx "
                                      "source copy (Build.source_copy), not an extra file")
            members[self.NETX_SOURCE] = bytes(self.source_copy)
        for name, data in sorted(members.items()):
            dest = _member_dest(tmp, name)
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_bytes(data)
        files = sorted(p.relative_to(tmp).as_posix() for p in tmp.rglob("*") if p.is_file())
        manifest = {"format": FORMAT, "version": VERSION, "target": self.target.name,
                    "source": self.graph.meta.get("source", ""),
                    "files": {f: _sha256((tmp / f).read_bytes()) for f in files}}
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
        return manifest["files"]

    @classmethod
    def load(cls, path: str | Path) -> "Build":
        """Read and check a build (see the module docstring); any problem is one
        `InputFileError` naming the member, what is wrong and the limit."""
        path = Path(path)
        if not path.exists():
            recover_leftovers(path)  # a compile killed between its two renames
        if not path.is_dir():
            raise InputFileError(f"{path}: build directory not found (run `snncompile "
                                 "compile` first)")
        if not os.path.lexists(path / "manifest.json"):
            raise InputFileError(f"{path}: not a build directory (no manifest.json)")
        mpath = path / "manifest.json"
        manifest = _parse_json(_read_member(path, "manifest.json", MAX_MANIFEST_BYTES), mpath)
        files = _manifest_files(manifest, mpath)
        data = {}
        for name, digest in files.items():
            limit = MAX_JSON_BYTES if name.endswith((".json", ".md", ".toml")) \
                else MAX_MEMBER_BYTES
            blob = _read_member(path, name, limit)
            if _sha256(blob) != digest:
                raise InputFileError(f"{path / name}: modified since compile (checksum "
                                     "mismatch); recompile")
            if name in REQUIRED or name.startswith("float/") or name == cls.NETX_SOURCE:
                data[name] = blob
        report = _parse_json(data["report.json"], path / "report.json")
        mapping = report.get("mapping", {}) if isinstance(report, dict) else None
        chips = mapping.get("chips", 1) if isinstance(mapping, dict) else None
        if not isinstance(chips, int) or isinstance(chips, bool) or not 1 <= chips <= 1 << 20:
            raise InputFileError(f"{path}/report.json: not a compile report (an object whose "
                                 "mapping names a number of chips); recompile")
        try:
            report_md = data["report.md"].decode()
        except UnicodeDecodeError:
            raise InputFileError(f"{path}/report.md: not UTF-8 text; recompile") from None
        target = _load_target(path, data["target.toml"])
        graph = _graph(path, data, "")
        check_fixed_graph(graph, target.numerics, where=str(path / "graph.json"))
        float_graph = _graph(path, data, "float/") if "float/graph.json" in data else None
        if float_graph is not None:
            check_float_graph(float_graph, where=str(path / "float" / "graph.json"))
        return cls(graph=graph, float_graph=float_graph, target=target, report=report,
                   report_md=report_md, path=path, members=files,
                   source_copy=data.get(cls.NETX_SOURCE))

    NETX_SOURCE = "netx/network.net"
    """Member holding a copy of the netx file a build was compiled from (the `netx` backend
    runs it with lava-dl's own loader)."""

    def netx_source(self) -> Path | None:
        """The saved copy of the netx source file (`source_copy` as written by `save`), or
        None (not compiled from netx, or not saved yet)."""
        if self.path is None or self.NETX_SOURCE not in self.members:
            return None
        return self.member(self.NETX_SOURCE)

    def member(self, name: str) -> Path:
        """Path of a member the manifest lists (and `load` verified); refuses others."""
        if self.path is None or name not in self.members:
            raise InputFileError(f"{self.path}: '{name}' is not listed in manifest.json")
        return self.path / name


def _member_dest(root: Path, name: str) -> Path:
    """Where member `name` goes inside `root`; refuses names that are not safe member
    paths or that resolve outside `root` (a `../` layer name, a link in the way)."""
    dest = root / name
    inside = os.path.realpath(dest).startswith(os.path.realpath(root) + os.sep)
    if not member_path_ok(name) or not inside:
        raise OutputFileError(f"{root}: refusing to write build member {name!r}: not a "
                              "relative path of identifier-like parts inside the build")
    return dest


def _read_member(root: Path, name: str, limit: int) -> bytes:
    """The bytes of `root/name`, never following a link (in any part) and refusing
    special files and files above `limit` bytes before reading them."""
    where = root / name
    parts = name.split("/")
    fds = []
    try:
        fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
        fds.append(fd)
        for part in parts[:-1]:
            fd = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
            fds.append(fd)
        fd = os.open(parts[-1], os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=fd)
        fds.append(fd)
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise InputFileError(f"{where}: not a regular file (a FIFO, device or folder); "
                                 "build members must be regular files")
        if st.st_size > limit:
            raise InputFileError(f"{where}: {st.st_size} bytes exceeds the {limit} allowed "
                                 "for a build member")
        with os.fdopen(os.dup(fd), "rb") as fh:
            blob = fh.read(limit + 1)
        if len(blob) > limit:
            raise InputFileError(f"{where}: exceeds the {limit} bytes allowed for a build "
                                 "member")
        return blob
    except FileNotFoundError:
        raise InputFileError(f"{where}: missing (listed in manifest.json); recompile") \
            from None
    except OSError as exc:
        if os.path.islink(where) or any(os.path.islink(root.joinpath(*parts[:i + 1]))
                                        for i in range(len(parts))):
            raise InputFileError(f"{where}: is a symbolic link; build members must be "
                                 "regular files inside the build") from None
        raise InputFileError(f"{where}: cannot read ({exc.strerror or exc})") from None
    finally:
        for fd in fds:
            os.close(fd)


def _parse_json(blob: bytes, where: Path):
    try:
        doc = json.loads(blob)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, UnicodeDecodeError
        msg = "nested too deeply" if isinstance(exc, RecursionError) else \
            str(exc).splitlines()[0][:120]
        raise InputFileError(f"{where}: corrupt JSON ({msg}); recompile") from None
    stack = [(doc, 1)]
    while stack:
        value, depth = stack.pop()
        if depth > MAX_JSON_DEPTH:
            raise InputFileError(f"{where}: JSON nested deeper than {MAX_JSON_DEPTH} "
                                 "levels; recompile")
        if isinstance(value, dict):
            stack.extend((v, depth + 1) for v in value.values())
        elif isinstance(value, list):
            stack.extend((v, depth + 1) for v in value)
    return doc


def _manifest_files(manifest, mpath: Path) -> dict[str, str]:
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT \
            or manifest.get("version") != VERSION:
        raise InputFileError(f"{mpath}: not a {FORMAT} version {VERSION} manifest")
    files = manifest.get("files")
    if not isinstance(files, dict):
        raise InputFileError(f"{mpath}: 'files' must be an object of member path -> "
                             f"sha256, got {type(files).__name__}; recompile")
    if len(files) > MAX_MEMBERS:
        raise InputFileError(f"{mpath}: lists {len(files)} files, more than {MAX_MEMBERS}")
    for name, digest in files.items():
        if not member_path_ok(name) or name == "manifest.json":
            shown = repr(name) if len(name) <= 80 else repr(name[:77]) + "..."
            raise InputFileError(f"{mpath}: member path {shown} is not allowed; members are "
                                 "relative paths of identifier-like parts inside the build")
        if not isinstance(digest, str) or not _SHA256.fullmatch(digest):
            raise InputFileError(f"{mpath}: member '{name}': checksum must be 64 hex "
                                 "digits (sha256)")
    missing = [m for m in REQUIRED if m not in files]
    if ("float/graph.json" in files) != ("float/arrays.npz" in files):
        missing.append("float/graph.json and float/arrays.npz together")
    if missing:
        raise InputFileError(f"{mpath}: does not list {', '.join(missing)}; every file the "
                             "loader reads must be listed; recompile")
    return dict(files)


def _load_target(path: Path, blob: bytes):
    """The build's target file; a `base` may only name a built-in target (never a path
    outside the build)."""
    tpath = path / "target.toml"
    try:
        raw = tomllib.loads(blob.decode())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError, RecursionError) as exc:
        msg = "nested too deeply" if isinstance(exc, RecursionError) else \
            str(exc).splitlines()[0][:120]
        raise InputFileError(f"{tpath}: not a valid TOML target file ({msg})") from None
    for key in ("name", "description"):  # printed by reports: no escapes to the terminal
        text = raw.get(key, "")
        if not isinstance(text, str) or len(text) > 1000 or not text.isprintable():
            raise InputFileError(f"{tpath}: '{key}' must be printable text of at most 1000 "
                                 "characters; recompile")
    base = raw.get("base")
    if base is not None and base not in available_targets():
        raise InputFileError(f"{tpath}: base {base!r} is not a built-in target "
                             f"({', '.join(available_targets())}); recompile")
    return load_target(tpath)


def _graph(path: Path, data: dict, prefix: str) -> Graph:
    gpath = path / f"{prefix}graph.json"
    doc = _parse_json(data[f"{prefix}graph.json"], gpath)
    check_attr_types(doc, str(gpath))
    try:
        arrays = load_npz(io.BytesIO(data[f"{prefix}arrays.npz"]))
    except InputFileError as exc:  # it names the in-memory buffer: name the member
        raise InputFileError(f"{path / prefix}arrays.npz: {str(exc).split(': ', 1)[-1]}") \
            from None
    return Graph.from_dict(doc, arrays, where=str(gpath))


def _sha256(blob: bytes) -> str:
    return hashlib.sha256(blob).hexdigest()


def _replaceable(path: Path) -> bool:
    """True when `path` is missing, an empty folder or a build directory. Looked at through
    one directory descriptor, so a concurrent writer swapping its build in (two renames)
    cannot make a build look like something else between two checks."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    except FileNotFoundError:
        return True
    except OSError:
        return not os.path.lexists(path)  # a file (ENOTDIR) or unreadable: not ours to replace
    try:
        names = os.listdir(fd)
    except OSError:
        return False
    finally:
        os.close(fd)
    return not names or "manifest.json" in names
