"""Reading a file whose path came from outside (a remote command, a CLI argument) without blocking.

``read_regular_file(path, allowed_dirs, max_bytes)`` is the one way commands read a named file:
the path must be absolute and, once symlinks are resolved, inside one of ``allowed_dirs``; it is
opened with ``O_NONBLOCK | O_NOFOLLOW`` (a FIFO, a device or a socket cannot make the open or the
read wait) and must be a regular file (``fstat``) of at most ``max_bytes``. Any refusal is an
``UnsafePathError`` (a ValueError) whose message names the path and the reason.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Sequence

_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISLNK, "a symlink"),
)


class UnsafePathError(ValueError):
    """A path a command may not read; the message is safe to send back to the requester."""


def _kind(mode: int) -> str:
    return next((name for test, name in _KINDS if test(mode)), "not a regular file")


def normalise_dirs(dirs: Sequence[str]) -> list[str]:
    """Allowed directories as absolute, symlink-resolved paths ('~' expanded); empty entries dropped."""
    return [os.path.realpath(os.path.expanduser(d)) for d in dirs if d and d.strip()]


def check_path(path: str, allowed_dirs: Sequence[str] | None, what: str = "path") -> str:
    """The resolved path, if it may be read; `allowed_dirs` None = anywhere (a local operator's CLI)."""
    if not isinstance(path, str) or not path:
        raise UnsafePathError(f"{what} must be a non-empty string")
    if "\0" in path:
        raise UnsafePathError(f"{what} contains a NUL character")
    if allowed_dirs is None:
        return os.path.realpath(os.path.expanduser(path))
    if not os.path.isabs(path):
        raise UnsafePathError(f"{what} {path!r} must be an absolute path")
    dirs = normalise_dirs(allowed_dirs)
    if not dirs:
        raise UnsafePathError(
            f"{what} is not accepted: no directory is allowed for reading (allowed_image_dirs is empty)"
        )
    real = os.path.realpath(path)
    if not any(real == d or real.startswith(d.rstrip(os.sep) + os.sep) for d in dirs):
        raise UnsafePathError(f"{what} {path!r} is outside the allowed directories ({', '.join(dirs)})")
    return real


def read_regular_file(path: str, allowed_dirs: Sequence[str] | None, max_bytes: int, what: str = "path") -> bytes:
    """The bytes of a regular file of at most `max_bytes`; UnsafePathError otherwise (never blocks)."""
    real = check_path(path, allowed_dirs, what)
    flags = (
        os.O_RDONLY
        | os.O_NONBLOCK
        | getattr(os, "O_NOFOLLOW", 0)
        | getattr(os, "O_CLOEXEC", 0)
        | getattr(os, "O_NOCTTY", 0)
    )
    try:
        fd = os.open(real, flags)
    except FileNotFoundError:
        raise UnsafePathError(f"{what} {path!r} does not exist") from None
    except PermissionError:
        raise UnsafePathError(f"{what} {path!r} is not readable (permission denied)") from None
    except OSError as err:  # ELOOP: replaced by a symlink after the check, ENXIO: a socket, ...
        raise UnsafePathError(f"{what} {path!r} cannot be opened: {err.strerror or err}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise UnsafePathError(f"{what} {path!r} is {_kind(st.st_mode)}, not a regular file")
        if st.st_size > max_bytes:
            raise UnsafePathError(f"{what} {path!r} is {st.st_size} bytes, larger than the limit of {max_bytes}")
        chunks: list[bytes] = []
        total = 0
        while True:  # a file that grows while read is cut at the cap, not read without end
            chunk = os.read(fd, min(1 << 20, max_bytes + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
            if total > max_bytes:
                raise UnsafePathError(f"{what} {path!r} grew past the limit of {max_bytes} bytes while read")
        return b"".join(chunks)
    except OSError as err:
        raise UnsafePathError(f"{what} {path!r} cannot be read: {err.strerror or err}") from None
    finally:
        os.close(fd)


def read_image(
    path: str, allowed_dirs: Sequence[str] | None, max_bytes: int, what: str = "image_path"
):  # -> np.ndarray
    """A JPEG/PNG/... file read with `read_regular_file`, decoded to BGR uint8; UnsafePathError/ValueError."""
    import cv2
    import numpy as np

    data = read_regular_file(path, allowed_dirs, max_bytes, what)
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if img is None:
        raise ValueError(f"{what} {path!r} does not decode as an image ({len(data)} bytes)")
    return img
