"""Image file names and atomic writes for the output folder.

A file is written to a temporary name in its folder, flushed to disk and
renamed into place, so a crash never leaves half a file under a real name;
names are built from the prompt but keep only ``[a-z0-9._-]``, so nothing can
escape the folder.
"""

from __future__ import annotations

import os
import re
import secrets
import stat
import time
import unicodedata
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from gemimg_jupyter.domain.errors import ValidationError

__all__ = ["path_error", "safe_filename", "slug", "user_target", "write_atomic", "write_user_file"]

_WORD = re.compile(r"[a-z0-9]+")
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)


def slug(text: str, limit: int = 40) -> str:
    """Lowercase ASCII words joined by ``-``, at most ``limit`` characters."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode().lower()
    out = ""
    for word in _WORD.findall(ascii_text):
        candidate = f"{out}-{word}" if out else word
        if len(candidate) > limit:
            break
        out = candidate
    return out or "image"


def safe_filename(params: Mapping[str, Any], token: str, when: float | None = None) -> str:
    """A readable, safe file name such as ``20261123-214501_paper-cut-fox_t0.8_16x9_ab12cd.png``.

    Only ``[a-z0-9._-]`` survive from the prompt, so nothing can escape the
    output directory or carry control characters; the length is bounded.
    """
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(when or time.time()))
    parts = [stamp, slug(str(params.get("prompt", "")))]
    if params.get("temperature") is not None:
        parts.append(f"t{params['temperature']:g}")
    parts.append(str(params.get("size", "1:1")).replace(":", "x"))
    if params.get("resolution") not in (None, "1K"):
        parts.append(str(params["resolution"]).lower())
    parts.append(re.sub(r"[^a-z0-9]", "", token.lower())[:6] or "x")
    return "_".join(parts) + ".png"


def unique_path(directory: Path, name: str) -> Path:
    """``directory / name``, or ``name-2``, ``name-3``… when taken; refuses a name that is not a plain file name."""
    safe = Path(name).name
    if not safe or safe in (".", "..") or safe != name:
        raise ValueError(f"unsafe file name {name!r}")
    target = directory / safe
    if target.exists():
        stem, suffix = target.stem, target.suffix
        n = 2
        while (directory / f"{stem}-{n}{suffix}").exists():
            n += 1
        target = directory / f"{stem}-{n}{suffix}"
    return target


def write_atomic(target: Path, data: bytes, *, sync: bool = True) -> Path:
    """Write ``data`` to ``target`` through a temporary file in its folder (fsync, then rename).

    ``sync=False`` skips the fsync, for files made again from others when lost (thumbnails). The
    temporary file is created with the user's umask (``0o666`` asked), so no ``chmod`` follows, and
    written with plain ``os.write`` calls: every system call lets the GIL go and queues for it again.
    """
    tmp, fd = _temporary(target.parent)
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            if sync:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def _temporary(folder: Path) -> tuple[str, int]:
    """A new ``.tmp-*.part`` file in ``folder``, opened for writing with the umask's mode (a name already there,
    e.g. another process's, is passed over, as ``mkstemp`` does)."""
    for _ in range(100):
        tmp = str(folder / f".tmp-{secrets.token_hex(6)}.part")
        try:
            return tmp, os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | _NOFOLLOW, 0o666)
        except FileExistsError:
            continue
    raise FileExistsError(f"no free temporary name in {folder}")


def path_error(message: str, path: object) -> ValidationError:
    """The one-line refusal of a user-given path."""
    return ValidationError(message, field="path", value=path)


def _kind(mode: int) -> str:
    """What a non-regular file is, in a word or two."""
    if stat.S_ISLNK(mode):
        return "a symbolic link"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def user_target(path: str | Path, default_name: str) -> Path:
    """Where a file asked for at a user-given ``path`` goes, or a one-line :class:`ValidationError`.

    An existing folder (or a link to one) gets ``default_name`` inside it; an existing
    symbolic link, FIFO, device or other non-regular file is refused and left as it is;
    an empty path, a missing folder or a parent that is not a folder is refused too.
    Only a new name or an existing regular file is returned.
    """
    if not str(path).strip():
        raise path_error("no path given: name a file or a folder (or leave the path out for the default)", path)
    target = Path(path).expanduser()
    if target.is_dir():  # follows a link: a link to a folder is a folder to write into
        target = target / default_name
    try:
        mode = target.lstat().st_mode
    except FileNotFoundError:
        mode = None
    except OSError as err:
        raise path_error(f"cannot write {target}: {err.strerror or err}", path) from None
    if mode is not None and not stat.S_ISREG(mode):
        raise path_error(f"{target} is {_kind(mode)}; gemimg writes only regular files and left it untouched", path)
    if not target.parent.is_dir():
        raise path_error(f"cannot write {target}: the folder {target.parent} does not exist", path)
    return target


def write_user_file(path: str | Path, data: bytes, default_name: str) -> Path:
    """Write ``data`` at a user-given ``path`` (see :func:`user_target`) atomically; returns where.

    Every failure is one :class:`ValidationError` line naming the path; nothing that
    is not a regular file is ever replaced.
    """
    target = user_target(path, default_name)
    try:
        return write_atomic(target, data)
    except OSError as err:
        raise path_error(f"cannot write {target}: {err.strerror or err}", path) from None


#: A half-written file (``write_atomic``'s temporary name) older than this is a leftover of a killed process.
LEFTOVER_AGE = 60.0


def remove_leftovers(*folders: Path, older_than: float = LEFTOVER_AGE) -> int:
    """Remove ``.tmp-*.part`` files older than ``older_than`` seconds (a ``kill -9`` mid-write); how many went.

    A younger one may be another live process's write in progress, so it stays.
    """
    removed = 0
    cutoff = time.time() - older_than
    for folder in folders:
        for part in folder.glob(".tmp-*.part"):
            try:
                if part.stat().st_mtime < cutoff:
                    part.unlink()
                    removed += 1
            except OSError:
                continue  # gone already, or not ours to remove
    return removed
