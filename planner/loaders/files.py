"""The one place that opens files: bounded reads of regular files, and writes that never lose one.

Reads refuse anything but a regular file before reading a byte (a FIFO would block, /dev/zero
never ends) and stop at a stated limit. Writes go to a temporary file beside the target, then
replace it in one rename; they refuse to replace anything but a regular file, keep the existing
file's mode (a new file honours the umask), write through a symbolic link to its target, and
leave no temporary file behind when interrupted.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from planner.errors import InputError
from planner.limits import MAX_PATH_BYTES
from planner.units import format_bytes

_KINDS = ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


def _a(what: str) -> str:
    return ("an " if what[:1].lower() in "aeiou" else "a ") + what


def _kind(mode: int) -> str:
    return next((name for test, name in _KINDS if test(mode)), "not a regular file")


def _os_error(exc: OSError, file: str, doing: str) -> InputError:
    if exc.errno == errno.ENOENT:
        return InputError("no such file", file=file)
    if exc.errno == errno.ENAMETOOLONG:
        return InputError("the path is too long for this system", file=file[:200] + "...")
    return InputError(f"cannot {doing}: {exc.strerror or exc}", file=file)


def check_path_length(path: str | os.PathLike[str], *, field: str | None = None) -> None:
    """Refuse a path longer than the system's PATH_MAX before any system call sees it."""
    if len(os.fsencode(path)) > MAX_PATH_BYTES:
        raise InputError(f"a path of {len(os.fsencode(path)):,} bytes is longer than the {MAX_PATH_BYTES:,}-byte limit",
                         field=field)


def probe(path: Path) -> os.stat_result | None:
    """stat() a path without raising: None when it does not exist or cannot be reached."""
    try:
        check_path_length(path)
        return path.stat()
    except (OSError, InputError, ValueError):
        return None


def is_regular_file(path: Path) -> bool:
    """True for an existing regular file (symbolic links followed)."""
    st = probe(path)
    return st is not None and stat.S_ISREG(st.st_mode)


def is_folder(path: Path) -> bool:
    """True for an existing folder."""
    st = probe(path)
    return st is not None and stat.S_ISDIR(st.st_mode)


@contextlib.contextmanager
def open_regular(path: Path, *, what: str = "file") -> Iterator[tuple[BinaryIO, int]]:
    """Open a regular file for reading (never blocking on a FIFO) and yield (handle, size)."""
    file = str(path)
    check_path_length(file)
    try:
        fd = os.open(file, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        if exc.errno == errno.EISDIR:
            raise InputError(f"expected {_a(what)}, found a folder", file=file) from None
        raise _os_error(exc, file, "read") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise InputError(f"expected {_a(what)}, found {_kind(info.st_mode)}", file=file)
        os.set_blocking(fd, True)
        handle = os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise
    with handle:
        yield handle, info.st_size


def read_bytes(path: Path, *, limit: int, what: str = "file") -> bytes:
    """The whole of a regular file of at most `limit` bytes."""
    with open_regular(path, what=what) as (handle, size):
        if size > limit:
            raise InputError(f"{format_bytes(size)} is larger than the {format_bytes(limit)} limit for {_a(what)}",
                             file=str(path))
        try:
            data = handle.read(limit + 1)
        except OSError as exc:
            raise _os_error(exc, str(path), "read") from None
    if len(data) > limit:
        raise InputError(f"larger than the {format_bytes(limit)} limit for {_a(what)}", file=str(path))
    return data


def read_text(path: Path, *, limit: int, what: str = "file") -> str:
    """A UTF-8 regular file of at most `limit` bytes, as text."""
    data = read_bytes(path, limit=limit, what=what)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise InputError(f"not UTF-8 text (byte {exc.start:,})", file=str(path), line=line) from None


def _target(path: Path) -> Path:
    """Where a write lands: the final target of a symbolic link, else the path itself."""
    if path.is_symlink():
        return Path(os.path.realpath(path))
    return path


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def check_writable(path: str | os.PathLike[str]) -> tuple[Path, os.stat_result | None]:
    """Where a write to `path` would land and what is there now; refuses a target that is not a
    regular file and a missing folder (checked before a run, so a bad -o fails at once)."""
    label = os.fspath(path)
    check_path_length(label, field="--output")
    target = _target(Path(label))
    existing = probe(target)
    if existing is not None and not stat.S_ISREG(existing.st_mode):
        raise InputError(f"{_kind(existing.st_mode)} is there, not a regular file; refusing to replace it", file=label)
    if not is_folder(target.parent):
        raise InputError(f"the folder {str(target.parent) or '.'} does not exist; create it first", file=label)
    return target, existing


def write_text(path: str | os.PathLike[str], text: str) -> None:
    """Replace `path` with `text` in one rename, keeping the file's mode; refuse non-regular files."""
    write_bytes(path, text.encode("utf-8"))


def write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Replace `path` with `data` in one rename, keeping the file's mode; refuse non-regular files."""
    label = os.fspath(path)
    target, existing = check_writable(label)
    folder = target.parent
    mode = stat.S_IMODE(existing.st_mode) if existing is not None else 0o666 & ~_umask()
    tmp: str | None = None
    try:
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{target.name}.", suffix=".tmp")
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
            os.fchmod(handle.fileno(), mode)
            if existing is not None and os.geteuid() == 0:
                with contextlib.suppress(OSError):
                    os.fchown(handle.fileno(), existing.st_uid, existing.st_gid)
        os.replace(tmp, target)
        tmp = None
    except OSError as exc:
        raise InputError(f"cannot write: {exc.strerror or exc}", file=label) from None
    finally:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)


EXPORT_MARK = ".plan-export"  # a folder holding this was written by `plan export` and may be replaced


def check_bundle_folder(out_dir: str | os.PathLike[str]) -> Path:
    """Where an export may go: a new folder, an empty one, or an earlier export (never a folder of other files)."""
    label = os.fspath(out_dir)
    check_path_length(label, field="--out")
    folder = Path(label)
    found = probe(folder)
    if found is None:
        if not is_folder(folder.parent if str(folder.parent) else Path(".")):
            raise InputError(f"the folder {folder.parent} does not exist; create it first", file=label, field="--out")
        return folder
    if not stat.S_ISDIR(found.st_mode):
        raise InputError(f"{_kind(found.st_mode)} is there, not a folder", file=label, field="--out")
    entries = os.listdir(folder)
    if entries and EXPORT_MARK not in entries:
        raise InputError("the folder holds other files; give a new or empty folder (an earlier export is replaced)",
                         file=label, field="--out")
    return folder


def write_bundle(out_dir: str | os.PathLike[str], files: dict[str, str], *, executable: tuple[str, ...] = (".sh", ".py")) -> None:
    """Write an export's files into `out_dir` all at once: into a new folder beside it, then one
    rename, so an interrupted export leaves the earlier one (or nothing) in place."""
    folder = check_bundle_folder(out_dir)
    parent = folder.parent if str(folder.parent) else Path(".")
    staging = Path(tempfile.mkdtemp(dir=parent, prefix=f".{folder.name}.", suffix=".tmp"))
    old: Path | None = None
    try:
        for rel, text in {**files, EXPORT_MARK: "written by plan export; this folder is replaced by the next export\n"}.items():
            path = staging / rel
            if ".." in Path(rel).parts or Path(rel).is_absolute():
                raise InputError(f"refusing to write outside the folder: {rel}", field="--out")
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
            mode = 0o777 if rel.endswith(executable) else 0o666
            os.chmod(path, mode & ~_umask())
        for sub in [staging, *[p for p in staging.rglob("*") if p.is_dir()]]:
            os.chmod(sub, 0o777 & ~_umask())
        if probe(folder) is not None:
            old = Path(tempfile.mkdtemp(dir=parent, prefix=f".{folder.name}.", suffix=".old"))
            os.replace(folder, old / "previous")
        os.replace(staging, folder)
        staging = None  # type: ignore[assignment]
    except OSError as exc:
        if old is not None and probe(folder) is None:
            with contextlib.suppress(OSError):
                os.replace(old / "previous", folder)
        raise InputError(f"cannot write the export: {exc.strerror or exc}", file=os.fspath(out_dir), field="--out") from None
    finally:
        for leftover in (staging, old):
            if leftover is not None:
                shutil.rmtree(leftover, ignore_errors=True)
