"""Writing a run's reports: a whole folder at once, and ``latest`` only where it is ours.

A run's files are written into a hidden folder (``.partial-<run-id>``) and the folder is renamed
into place when every file is there, so a run folder is always complete; a run killed part way
leaves a hidden partial folder (and perhaps ``.tmp`` files), which the next run removes -- they
carry simonsca's marker file, so nothing else is ever touched. ``<reports>/latest`` is a symlink
to the newest run (a copy marked as simonsca's where symlinks are not available); a real folder
there that simonsca did not make is the user's and is left alone, with a warning.

A run claims its id when it is planned (:func:`claim_run`: a ``.claim-<run-id>`` file holding
the process id, made with ``O_EXCL``), so a second run given the same ``--run-id`` while the
first is still working is refused before its model work, not after. A claim whose process is
gone is stale and taken over.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import sys
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path

from simonsca.errors import ConfigError, OutputExistsError, SimonscaError

LATEST = "latest"
#: Marker file in every folder simonsca writes under the reports folder.
MARKER = ".simonsca-run"
PARTIAL_PREFIX = ".partial-"
#: The empty file written (and removed) to see that the reports folder takes files.
PROBE_PREFIX = ".simonsca-probe-"
#: A planned run's claim on its id (holds the claiming process's id).
CLAIM_PREFIX = ".claim-"


def _warn(message: str) -> None:
    print(f"simonsca: {message}", file=sys.stderr)


def prepare_reports_dir(path: Path, *, warn: Callable[[str], None] = _warn) -> Path:
    """Make sure reports can be written to ``path`` (before any model work), and clear what
    interrupted runs left there. :class:`ConfigError` in one line otherwise."""
    if path.exists() and not path.is_dir():
        raise ConfigError(
            f"reports folder {path} is a file, not a folder; pass another --reports-dir "
            "(under pytest: --simonsca-reports-dir)"
        )
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f"{PROBE_PREFIX}{uuid.uuid4().hex[:8]}"
        probe.write_text("")
        probe.unlink()
    except OSError as error:
        why = error.strerror or type(error).__name__
        raise ConfigError(
            f"reports folder {path} cannot be written ({why}); pass another --reports-dir "
            "(under pytest: --simonsca-reports-dir)"
        ) from None
    _clear_leftovers(path, warn)
    return path


def _clear_leftovers(root: Path, warn: Callable[[str], None]) -> None:
    for entry in root.iterdir():
        partial = entry.name.startswith(PARTIAL_PREFIX) and not entry.is_symlink()
        # A partial folder carries the marker from its first write; one killed before that is
        # empty (an empty folder holds nothing of anyone's).
        ours = partial and ((entry / MARKER).is_file() or _is_empty_dir(entry))
        ours = ours or (entry.name.startswith(f".{LATEST}-") and _is_ours(entry))
        ours = ours or (entry.name.startswith(PROBE_PREFIX) and _is_empty_file(entry))
        if entry.name.startswith(CLAIM_PREFIX) and entry.is_file() and not entry.is_symlink():
            holder = _claim_holder(entry)
            ours = holder is None or not _alive(holder)  # a live run's claim stays
        if ours and entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        elif ours:
            entry.unlink(missing_ok=True)
    for run in root.iterdir():
        if run.is_dir() and not run.is_symlink() and (run / MARKER).is_file():
            for tmp in run.glob(".*.tmp"):
                tmp.unlink(missing_ok=True)


def _run_exists(run_dir: Path, run_id: str) -> OutputExistsError:
    return OutputExistsError(
        f"{run_dir}: a report for run {run_id} already exists; choose another --run-id "
        "(under pytest: --simonsca-run-id)"
    )


def claim_run(root: Path, run_id: str) -> Path:
    """Claim ``run_id`` under ``root`` for this process until its folder is written (or the
    process ends). :class:`OutputExistsError` in one line if its folder exists, or another live
    process holds it."""
    if (root / run_id).exists() or (root / run_id).is_symlink():
        raise _run_exists(root / run_id, run_id)
    claim = root / f"{CLAIM_PREFIX}{run_id}"
    for _ in range(3):
        try:
            fd = os.open(claim, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            holder = _claim_holder(claim)
            if holder is not None and holder != os.getpid() and _alive(holder):
                raise OutputExistsError(
                    f"{root / run_id}: run {run_id} is being run by another simonsca (process "
                    f"{holder}); choose another --run-id (under pytest: --simonsca-run-id)"
                ) from None
            claim.unlink(missing_ok=True)  # stale, or this process's own earlier claim
            continue
        except OSError as error:
            raise _cannot_write(root, error) from None
        with os.fdopen(fd, "w") as out:
            out.write(f"{os.getpid()}\n")
        atexit.register(release_claim, claim)
        return claim
    raise OutputExistsError(f"{root / run_id}: run {run_id} could not be claimed; try again")


def release_claim(claim: Path) -> None:
    """Remove this process's claim (another process's is left alone)."""
    if _claim_holder(claim) == os.getpid():
        with contextlib.suppress(OSError):
            claim.unlink()


def _claim_holder(claim: Path) -> int | None:
    try:
        return int(claim.read_text().strip())
    except (OSError, ValueError):
        return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, owned by someone else
        return True
    return True


def _is_ours(entry: Path) -> bool:
    """A folder with simonsca's marker, or a symlink as simonsca makes them: to a sibling run
    folder by its bare name (that folder marked as simonsca's, or gone)."""
    if entry.is_symlink():
        try:
            target = os.readlink(entry)
        except OSError:
            return False
        if not target or os.sep in target or target in (".", ".."):
            return False
        run = entry.parent / target
        return not run.exists() or (run / MARKER).is_file()
    return entry.is_dir() and (entry / MARKER).is_file()


def _is_empty_file(entry: Path) -> bool:
    return entry.is_file() and not entry.is_symlink() and entry.stat().st_size == 0


def _is_empty_dir(entry: Path) -> bool:
    try:
        return entry.is_dir() and not any(entry.iterdir())
    except OSError:
        return False


def write_run(
    root: Path, run_id: str, files: Mapping[str, str], *, warn: Callable[[str], None] = _warn
) -> Path:
    """Write ``files`` (name -> text) as ``root/run_id/``, whole or not at all; point
    ``root/latest`` at it. :class:`OutputExistsError` if that run folder exists."""
    run_dir = root / run_id
    if run_dir.exists() or run_dir.is_symlink():
        raise _run_exists(run_dir, run_id)
    partial = root / f"{PARTIAL_PREFIX}{run_id}-{uuid.uuid4().hex[:6]}"
    try:
        partial.mkdir()
    except OSError as error:
        raise _cannot_write(root, error) from None
    try:
        (partial / MARKER).write_text(f"simonsca report folder for run {run_id}\n")
        for name, text in files.items():
            target = partial / name
            with target.open("w", encoding="utf-8", newline="\n") as out:
                out.write(text)
                out.flush()
                os.fsync(out.fileno())
        os.chmod(partial, 0o777 & ~_umask())
        try:
            os.rename(partial, run_dir)  # fails (does not replace) if run_dir appeared meanwhile
        except OSError:
            raise _run_exists(run_dir, run_id) from None
    except OSError as error:  # a disk that fills, a folder that vanished
        shutil.rmtree(partial, ignore_errors=True)
        raise _cannot_write(root, error) from None
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    release_claim(root / f"{CLAIM_PREFIX}{run_id}")
    try:
        point_latest(root, run_dir, warn=warn)
    except OSError as error:  # the run folder is complete; latest is only a convenience
        warn(
            f"{root / LATEST} could not be updated ({error.strerror or error}); "
            f"this run's reports are in {run_dir}"
        )
    return run_dir


def _cannot_write(root: Path, error: OSError) -> SimonscaError:
    where = f" ({error.filename})" if error.filename else ""
    return SimonscaError(
        f"reports folder {root} cannot be written: {error.strerror or error}{where}; free some "
        "space or pass another --reports-dir (under pytest: --simonsca-reports-dir)"
    )


def point_latest(root: Path, run_dir: Path, *, warn: Callable[[str], None] = _warn) -> None:
    """Make ``root/latest`` name ``run_dir``: a relative symlink swapped in atomically, or a marked
    copy; never over a folder or file of the user's."""
    latest = root / LATEST
    if (latest.exists() or latest.is_symlink()) and not _is_ours(latest):
        warn(
            f"{latest} is not simonsca's (a file or folder of your own); left it alone -- "
            f"this run's reports are in {run_dir}"
        )
        return
    tmp = root / f".{LATEST}-{uuid.uuid4().hex[:8]}"
    try:
        os.symlink(run_dir.name, tmp, target_is_directory=True)
    except (OSError, NotImplementedError):
        _copy_latest(root, run_dir)
        return
    try:
        if latest.is_dir() and not latest.is_symlink():
            old = root / f".{LATEST}-old-{uuid.uuid4().hex[:8]}"
            os.replace(latest, old)  # our marked copy from an earlier fallback
            os.replace(tmp, latest)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, latest)
    except OSError:
        tmp.unlink(missing_ok=True)
        _copy_latest(root, run_dir)


def _copy_latest(root: Path, run_dir: Path) -> None:
    latest = root / LATEST
    tmp = root / f".{LATEST}-copy-{uuid.uuid4().hex[:8]}"
    shutil.copytree(run_dir, tmp)
    old = None
    if latest.is_symlink():
        latest.unlink()
    elif latest.exists():
        old = root / f".{LATEST}-old-{uuid.uuid4().hex[:8]}"
        os.replace(latest, old)
    os.replace(tmp, latest)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
