"""Write a file so that readers see the old file or the new one, never half of either."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TextIO

from simonsca.errors import ConfigError, OutputExistsError


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextmanager
def atomic_text_writer(path: Path, *, newline: str | None = None) -> Iterator[TextIO]:
    """A text file at a temporary name beside ``path``, renamed over it when the block ends.

    On error (or Ctrl-C) the temporary file is removed and ``path`` is left as it was. The new
    file gets the usual permissions (0666 less the umask), not mkstemp's private 0600.
    """
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline=newline) as out:
            yield out
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """A temporary path beside ``path`` for a writer that opens files itself (a GGUF writer),
    renamed over ``path`` when the block ends; removed on error, ``path`` left as it was."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def check_output(
    out: Path, what: str, inputs: tuple[Path, ...] = (), *, overwrite: bool = False
) -> None:
    """Refuse, in one line naming ``what`` (e.g. "merged model"), an output path that cannot
    take a new file: a folder, something not a regular file, a path under a file, an existing
    file without ``overwrite``, or one of the command's own ``inputs``."""
    if out.is_dir():
        raise ConfigError(f"{what} path {out} is a folder; give a file name inside it")
    if out.exists() and not out.is_file():
        raise ConfigError(f"{what} path {out} is not a regular file; choose another")
    for parent in (out.parent, *out.parent.parents):
        if parent.exists():
            if not parent.is_dir():
                raise ConfigError(f"cannot write {what} {out}: {parent} is a file, not a folder")
            break
    if out.exists() and not overwrite:
        raise OutputExistsError(f"{what} {out} already exists; pass --force to replace it")
    if out.resolve() in {p.resolve() for p in inputs}:
        raise ConfigError(f"{what} path {out} is one of the inputs; choose another file name")
