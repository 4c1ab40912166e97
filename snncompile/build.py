"""The build directory: everything `compile` produced, written atomically and
deterministically (same inputs give byte-identical files).

    BUILD/
      manifest.json        format, version, target, source, sha256 of every file
      target.toml          the target description the build was compiled for
      graph.json           fixed-point graph (format: snncompile.ir.graph)
      arrays.npz           its integer arrays
      float/graph.json     float graph after pool folding (for float accuracy; absent for
                           models that arrive in fixed point, e.g. netx)
      float/arrays.npz
      report.json          compile report for programs
      report.md            compile report for people
      mapping.json         core mapping: every block and core, utilisation, placement
      coproc/NAME.onnx     each co-processor partition as a standalone integer ONNX model
                           (attention models only; checked with onnx.checker)
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
from pathlib import Path

from .errors import InputFileError
from .ir import Graph
from .target import TargetSpec, load_target

FORMAT = "snncompile-build"
VERSION = 1


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

    def save(self, path: str | Path) -> Path:
        """Write into `path` atomically: a failure leaves any previous build untouched."""
        path = Path(path)
        if path.exists() and not (path / "manifest.json").exists():
            if not path.is_dir() or any(path.iterdir()):
                raise InputFileError(f"{path}: exists and is not a build directory; refusing "
                                     "to overwrite it")
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.parent / f".{path.name}.tmp-{os.getpid()}"
        old = path.parent / f".{path.name}.old-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        try:
            tmp.mkdir()
            shutil.copyfile(self.target.path, tmp / "target.toml")
            self.graph.save(tmp)
            if self.float_graph is not None:
                (tmp / "float").mkdir()
                self.float_graph.save(tmp / "float")
            (tmp / "report.json").write_text(json.dumps(self.report, indent=1) + "\n")
            (tmp / "report.md").write_text(self.report_md)
            for name, doc in sorted(self.extra_files.items()):
                (tmp / name).write_text(json.dumps(doc, indent=1) + "\n")
            for name, data in sorted(self.extra_bytes.items()):
                (tmp / name).parent.mkdir(parents=True, exist_ok=True)
                (tmp / name).write_bytes(data)
            files = sorted(str(p.relative_to(tmp)) for p in tmp.rglob("*") if p.is_file())
            manifest = {"format": FORMAT, "version": VERSION, "target": self.target.name,
                        "source": self.graph.meta.get("source", ""),
                        "files": {f: _sha256(tmp / f) for f in files}}
            (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
            if path.exists():
                os.replace(path, old)
            os.replace(tmp, path)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
            shutil.rmtree(old, ignore_errors=True)
        self.path = path
        return path

    @classmethod
    def load(cls, path: str | Path) -> "Build":
        path = Path(path)
        mpath = path / "manifest.json"
        if not path.is_dir():
            raise InputFileError(f"{path}: build directory not found (run `snncompile "
                                 "compile` first)")
        try:
            manifest = json.loads(mpath.read_text())
        except FileNotFoundError:
            raise InputFileError(f"{path}: not a build directory (no manifest.json)") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise InputFileError(f"{mpath}: corrupt ({exc})") from None
        if not isinstance(manifest, dict) or manifest.get("format") != FORMAT \
                or manifest.get("version") != VERSION:
            raise InputFileError(f"{mpath}: not a {FORMAT} version {VERSION} manifest")
        for name, digest in dict(manifest.get("files", {})).items():
            fpath = path / name
            if not fpath.is_file() or _sha256(fpath) != digest:
                raise InputFileError(f"{fpath}: missing or modified since compile (checksum "
                                     "mismatch); recompile")
        try:
            report = json.loads((path / "report.json").read_text())
            report_md = (path / "report.md").read_text()
        except (OSError, ValueError) as exc:  # JSONDecodeError, UnicodeDecodeError
            raise InputFileError(f"{path}: unreadable report ({type(exc).__name__}); "
                                 "recompile") from None
        if not isinstance(report, dict):
            raise InputFileError(f"{path}/report.json: not a JSON object; recompile")
        float_graph = Graph.load(path / "float") if (path / "float").is_dir() else None
        return cls(graph=Graph.load(path), float_graph=float_graph,
                   target=load_target(path / "target.toml"), report=report,
                   report_md=report_md, path=path)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()
