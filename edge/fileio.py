"""Atomic file writes: a temp file beside the target, fsync, then rename.

Every file edgetrt writes (engines, reports, units, exported timings) goes through here,
so an interrupted or failed write never leaves a half-written file, and new files get the
usual permissions (0666 minus the umask) instead of mkstemp's private 0600. A write that
fails (a folder where the file should be, no permission, a full disk) raises
``FileWriteError`` with a one-line reason. User array files are read here too
(:func:`read_arrays`), checked before anything is allocated.
"""

from __future__ import annotations

import errno
import math
import os
import shutil
import tempfile
import zipfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

import numpy as np

from edge.errors import FileWriteError

__all__ = ["atomic_directory", "atomic_path", "write_atomic", "read_arrays"]


def _umask() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return umask


def _default_mode() -> int:
    return 0o666 & ~_umask()


@contextmanager
def atomic_path(path: str | os.PathLike, mode: int | None = None) -> Iterator[Path]:
    """Yield a temporary path to write; on success it replaces ``path``, on error it vanishes.

    Args:
        path: the final file.
        mode: permission bits of the final file (default: 0666 minus the umask).
    """
    target = Path(path)
    if target.is_dir():
        raise FileWriteError(f"cannot write '{target}': it is a folder; give a file name")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    except OSError as exc:
        raise FileWriteError(f"cannot write '{target}': {_reason(exc)}") from None
    os.close(fd)
    temp = Path(tmp)
    try:
        yield temp
        with open(temp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.chmod(temp, _default_mode() if mode is None else mode)
        os.replace(temp, target)
    except OSError as exc:
        temp.unlink(missing_ok=True)
        raise FileWriteError(f"cannot write '{target}': {_reason(exc)}; nothing was written") from None
    except BaseException:
        temp.unlink(missing_ok=True)
        raise


def _reason(exc: OSError) -> str:
    if exc.errno == errno.ENOSPC:
        return "no space left on the device"
    return exc.strerror or str(exc)


def write_atomic(path: str | os.PathLike, data: bytes | str, mode: int | None = None) -> None:
    """Write ``data`` (text as UTF-8) to ``path`` atomically."""
    payload = data.encode("utf-8") if isinstance(data, str) else data
    with atomic_path(path, mode) as temp:
        temp.write_bytes(payload)


@contextmanager
def atomic_directory(path: str | os.PathLike) -> Iterator[Path]:
    """Yield an empty folder beside ``path`` to fill; on success it replaces ``path`` (a previous
    folder there is removed after), on error it vanishes and ``path`` stays as it was."""
    target = Path(path)
    if target.exists() and not target.is_dir():
        raise FileWriteError(f"cannot write folder '{target}': a file is in its place")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        temp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    except OSError as exc:
        raise FileWriteError(f"cannot write folder '{target}': {_reason(exc)}") from None
    try:
        yield temp
        os.chmod(temp, 0o777 & ~_umask())  # mkdtemp's folders are private (0700)
        previous = target.with_name(f".{target.name}.{temp.name}.old") if target.exists() else None
        if previous is not None:
            os.replace(target, previous)
        os.replace(temp, target)
    except OSError as exc:
        shutil.rmtree(temp, ignore_errors=True)
        raise FileWriteError(f"cannot write folder '{target}': {_reason(exc)}; nothing was written") from None
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        raise
    if previous is not None:
        shutil.rmtree(previous, ignore_errors=True)


# -- reading user arrays ---------------------------------------------------------------
#
# .npy/.npz files come from users (calibration folders, --input): refuse what is not a
# regular file (a FIFO would block forever), object arrays (pickle), and any file whose
# declared array sizes exceed the memory budget or look like a zip bomb, before allocating.

_BOMB_RATIO = 100
_BOMB_MIN_BYTES = 64 << 20


def _memory_budget() -> int:
    """Half the memory available now: what one set of user arrays may take."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES") // 2
    except (ValueError, OSError, AttributeError):
        return 1 << 34


def _npy_header(handle: BinaryIO, where: str, error: type[Exception]) -> tuple[tuple[int, ...], np.dtype]:
    """Shape and dtype from an .npy header, without reading the data."""
    try:
        version = np.lib.format.read_magic(handle)
        readers = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
        if version not in readers:
            raise ValueError(f".npy format version {version[0]}.{version[1]} is not supported")
        shape, _, dtype = readers[version](handle)
    except (ValueError, EOFError, OSError, SyntaxError, TypeError) as exc:
        raise error(f"{where} is not a valid .npy array ({str(exc).strip() or 'empty or truncated'})") from None
    if dtype.hasobject:
        raise error(f"{where} holds an object array (Python objects, loadable only through pickle); save numeric data")
    return tuple(shape), dtype


def _budgeted(nbytes: int, where: str, error: type[Exception]) -> None:
    budget = _memory_budget()
    if nbytes > budget:
        raise error(f"{where} declares {nbytes / 1e9:.2f} GB of arrays, more than the {budget / 1e9:.2f} GB memory budget")


def read_arrays(path: str | os.PathLike, error: type[Exception], mmap: bool = False) -> dict[str, np.ndarray]:
    """Arrays of an .npy (key "") or .npz file, checked before anything is allocated.

    Args:
        path: the file.
        error: the exception type to raise (the caller's user-error class).
        mmap: map an .npy read-only instead of reading it.
    """
    target = Path(path)
    where = f"'{target}'"
    if not target.exists():
        raise error(f"file {where} does not exist")
    if not target.is_file():
        raise error(f"{where} is not a regular file (a FIFO, device or folder); give a saved .npy/.npz file")
    try:
        if target.suffix == ".npz":
            return _read_npz(target, where, error)
        with open(target, "rb") as handle:
            shape, dtype = _npy_header(handle, where, error)
            nbytes = math.prod(shape) * dtype.itemsize
            if handle.tell() + nbytes > target.stat().st_size:
                raise error(f"{where} is truncated: its header declares {nbytes} bytes of data")
        _budgeted(nbytes, where, error)
        return {"": np.load(target, mmap_mode="r" if mmap else None, allow_pickle=False)}
    except (OSError, ValueError, EOFError) as exc:
        raise error(f"{where} cannot be read: {str(exc).strip() or type(exc).__name__}") from None


def _read_npz(target: Path, where: str, error: type[Exception]) -> dict[str, np.ndarray]:
    try:
        with zipfile.ZipFile(target) as archive:
            members = [m for m in archive.infolist() if not m.is_dir()]
            _budgeted(sum(m.file_size for m in members), where, error)
            arrays = {}
            for member in members:
                label = f"{where} member '{member.filename}'"
                if member.file_size > _BOMB_MIN_BYTES and member.file_size > _BOMB_RATIO * max(member.compress_size, 1):
                    raise error(
                        f"{label} expands {member.compress_size} bytes to {member.file_size} "
                        f"(over {_BOMB_RATIO}:1); refusing a likely zip bomb"
                    )
                with archive.open(member) as handle:
                    shape, dtype = _npy_header(handle, label, error)
                    if math.prod(shape) * dtype.itemsize > member.file_size:
                        raise error(f"{label} is truncated: its header declares more data than the member holds")
                with archive.open(member) as handle:
                    arrays[member.filename.removesuffix(".npy")] = np.lib.format.read_array(handle, allow_pickle=False)
            return arrays
    except (zipfile.BadZipFile, zlib.error, EOFError, ValueError, OSError, NotImplementedError) as exc:
        raise error(f"{where} is not a valid .npz archive ({str(exc).strip() or type(exc).__name__})") from None
