"""Small shared helpers: atomic file writes with the permissions of a normal write."""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import tempfile
from pathlib import Path
from typing import Iterator


def current_umask() -> int:
    """The process umask, read without changing it where the OS allows (Linux: ``/proc/self/status``)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)  # the classic way: set and restore (not thread-safe, hence only a fallback)
    os.umask(mask)
    return mask


def normal_permissions(path: str | os.PathLike[str]) -> None:
    """Give ``path`` (and everything under it) the permissions a plain ``open``/``mkdir`` would have given.

    Writers that stage their output in a private temporary (``tempfile.mkstemp``, safetensors'
    ``save_file``, ...) leave files ``0600``; a normal write gives ``0666 & ~umask`` (``0777 &
    ~umask`` for directories and for files that carry an execute bit). Symlinks are left alone.
    """
    mask = current_umask()
    file_mode, exec_mode = 0o666 & ~mask, 0o777 & ~mask

    def fix(p: str) -> None:
        st = os.lstat(p)
        if stat.S_ISLNK(st.st_mode):
            return
        if stat.S_ISDIR(st.st_mode):
            mode = exec_mode
        else:
            mode = exec_mode if st.st_mode & 0o111 else file_mode
        if stat.S_IMODE(st.st_mode) != mode:
            os.chmod(p, mode)

    root = os.fspath(path)
    fix(root)
    if os.path.isdir(root) and not os.path.islink(root):
        for dirpath, dirnames, filenames in os.walk(root):
            for name in dirnames + filenames:
                fix(os.path.join(dirpath, name))


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path next to ``target``; rename it over ``target`` only on success.

    Works for files and directories. On error the temporary is removed and ``target`` keeps
    its previous content (or stays absent). The result has the permissions a normal write of
    ``target`` would give (``0666 & ~umask`` for files, ``0777 & ~umask`` for directories),
    whatever mode the writer left on the temporary.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    out = tmp / target.name
    try:
        yield out
        if out.exists():
            normal_permissions(out)
        if target.is_dir() and out.is_dir():
            old = target.with_name(f".{target.name}.old-{os.getpid()}")
            os.replace(target, old)
            os.replace(out, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            if target.is_dir():
                shutil.rmtree(target)
            os.replace(out, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
