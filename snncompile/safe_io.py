"""Writing outputs safely: every file or directory the tool produces is written into a
temporary sibling (same folder, so the same file system) and renamed over its destination,
so that a crash, a kill or a full disk leaves either the old output or the new one, never a
truncated mix. OS failures become one-line `OutputFileError`s naming the path and the cause.

    >>> with atomic_path("out/report.png") as tmp:   # a library writes `tmp` by name
    ...     figure.savefig(tmp)
    >>> write_json("out/verify.json", {"equivalent": True})

Temporaries are named `.NAME.tmp-PID-TOKEN` (directories also move an old version aside as
`.NAME.old-PID-TOKEN` for the instant between two renames). `recover_leftovers` removes
those of processes that no longer run and puts a stranded old directory back when its
destination is missing, so an interrupted run is repaired by the next one.
"""
from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import secrets
import shutil
import stat
from pathlib import Path

from .errors import OutputFileError

_LEFTOVER = r"\.(tmp|old)-(\d+)(?:-[0-9a-f]+)?"
_INSTALL_TRIES = 100  # concurrent writers to one directory: each try moves one aside


def os_error(exc: OSError, path, doing: str = "write") -> OutputFileError:
    """`PATH: cannot write (No space left on device)`: one line, path and cause."""
    cause = exc.strerror or type(exc).__name__
    return OutputFileError(f"{path}: cannot {doing} ({cause})")


def _name_max(folder: Path) -> int:
    try:
        return os.pathconf(folder, "PC_NAME_MAX")
    except (OSError, ValueError):
        return 255


def check_output_path(path, directory: bool = False, make_parents: bool = False) -> Path:
    """Refuse destinations a safe write cannot replace, with one line each: an empty or
    `.`/`..` name, a symbolic link (it would be replaced, not followed), a directory where
    a file is wanted (or a non-directory where a directory is), special files, a missing
    parent folder (unless `make_parents`: the writer creates it), a name longer than the
    file system allows."""
    p = Path(path)
    if p.name in ("", ".", "..") or (str(path).endswith(os.sep) and not directory):
        raise OutputFileError(f"{path}: not a usable output name (give a name inside an "
                              "existing folder, e.g. out/result)")
    try:
        st = os.lstat(p)
    except FileNotFoundError:
        st = None
    except OSError as exc:
        raise os_error(exc, path, "write") from None
    if st is not None:
        if stat.S_ISLNK(st.st_mode):
            raise OutputFileError(f"{path}: is a symbolic link; refusing to replace it "
                                  "(write to its target or remove the link)")
        if directory and not stat.S_ISDIR(st.st_mode):
            raise OutputFileError(f"{path}: exists and is not a directory")
        if not directory and stat.S_ISDIR(st.st_mode):
            raise OutputFileError(f"{path}: is a directory; give a file name")
        if not directory and not stat.S_ISREG(st.st_mode):
            raise OutputFileError(f"{path}: exists and is not a regular file; refusing to "
                                  "replace it")
    parent = p.parent
    if make_parents:
        while not parent.exists() and parent != parent.parent:
            parent = parent.parent
    if not parent.is_dir():
        raise OutputFileError(f"{path}: the folder {parent} does not exist" +
                              (" or is not a folder" if make_parents else ""))
    limit = _name_max(parent)
    # the temporary's name is longer than the destination's: keep room for it
    if len(os.fsencode(p.name)) + 40 > limit:
        raise OutputFileError(f"{path}: file name is {len(os.fsencode(p.name))} bytes; at "
                              f"most {limit - 40} are supported (file system limit {limit})")
    return p


def _temp_name(p: Path, kind: str = "tmp") -> Path:
    return p.parent / f".{p.name}.{kind}-{os.getpid()}-{secrets.token_hex(4)}{p.suffix}"


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(path):
    """Yield a fresh temporary path next to `path` (same suffix, created empty with
    O_EXCL) for a library that writes by file name; on success it is renamed over `path`,
    on any failure removed. OS errors become `OutputFileError`."""
    p = check_output_path(path)
    recover_leftovers(p)
    tmp = _temp_name(p)
    try:
        os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o666))
    except OSError as exc:
        raise os_error(exc, path) from None
    try:
        yield tmp
        if os.path.islink(tmp) or not tmp.is_file():
            raise OutputFileError(f"{path}: the writer did not produce a regular file")
        _fsync_file(tmp)
        os.replace(tmp, p)
        _fsync_dir(p.parent)
    except OSError as exc:
        _remove(tmp)
        raise os_error(exc, path) from None
    except BaseException:
        _remove(tmp)
        raise


def atomic_write_bytes(path, data: bytes) -> Path:
    """Write `data` to `path` atomically."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            fh.write(data)
    return Path(path)


def atomic_write_text(path, text: str) -> Path:
    return atomic_write_bytes(path, text.encode())


def write_json(path, doc) -> Path:
    """A JSON document (indent 1, trailing newline), written atomically."""
    return atomic_write_text(path, json.dumps(doc, indent=1) + "\n")


def _remove(path: Path) -> None:
    try:
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path, ignore_errors=True)
        else:
            os.unlink(path)
    except OSError:
        pass


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # PermissionError: it exists, owned by someone else
        return True
    return True


def recover_leftovers(path) -> list[Path]:
    """Clean up after interrupted writers of `path` that no longer run: remove their
    temporaries; if `path` is missing, put back the newest old directory that was moved
    aside (a kill between the two renames of `atomic_directory`) and remove the others.
    Returns what was removed or restored. Failures to clean are ignored (best effort)."""
    p = Path(path)
    pattern = re.compile(re.escape("." + p.name) + _LEFTOVER + f"(?:{re.escape(p.suffix)})?")
    try:
        entries = list(os.scandir(p.parent))
    except OSError:
        return []
    olds, touched = [], []
    for e in entries:
        m = pattern.fullmatch(e.name)
        if m is None or _alive(int(m.group(2))):
            continue
        if m.group(1) == "old" and e.is_dir(follow_symlinks=False):
            olds.append(Path(e.path))
        else:
            _remove(Path(e.path))
            touched.append(Path(e.path))
    olds.sort(key=lambda q: q.lstat().st_mtime, reverse=True)
    if olds and not os.path.lexists(p):
        with contextlib.suppress(OSError):
            os.rename(olds[0], p)
            touched.append(olds.pop(0))
    for q in olds:
        _remove(q)
        touched.append(q)
    return touched


@contextlib.contextmanager
def atomic_directory(path):
    """Yield an empty temporary directory next to `path`; on success it replaces `path`
    (an old directory there is moved aside, then removed). Concurrent writers of the same
    `path` all succeed; the last one to finish wins. On failure the temporary is removed
    and any old directory is left (or put back) in place."""
    p = check_output_path(path, directory=True)
    recover_leftovers(p)
    tmp = _temp_name(p)
    try:
        os.mkdir(tmp)
    except OSError as exc:
        raise os_error(exc, path) from None
    try:
        yield tmp
        for folder, _, files in os.walk(tmp):
            for f in files:
                _fsync_file(Path(folder) / f)
        _install(tmp, p)
        _fsync_dir(p.parent)
    except OSError as exc:
        _remove(tmp)
        raise os_error(exc, path) from None
    except BaseException:
        _remove(tmp)
        raise


def _install(tmp: Path, p: Path) -> None:
    for _ in range(_INSTALL_TRIES):
        old = None
        if os.path.lexists(p):
            old = _temp_name(p, "old")
            try:
                os.rename(p, old)
            except FileNotFoundError:  # another writer moved it first
                old = None
        try:
            os.rename(tmp, p)
        except OSError as exc:
            if exc.errno in (errno.ENOTEMPTY, errno.EEXIST):  # another writer got in between
                if old is not None:
                    _remove(old)
                continue
            if old is not None and not os.path.lexists(p):
                with contextlib.suppress(OSError):
                    os.rename(old, p)
            raise
        if old is not None:
            _remove(old)
        return
    raise OutputFileError(f"{p}: could not be replaced: {_INSTALL_TRIES} other writers "
                          "replaced it at the same time")
