"""Answers on disk, so a re-run after changing a threshold reads everything back in seconds.

One sqlite3 file (``$SIMONSCA_CACHE/completions.sqlite3``, default ``~/.cache/simonsca``) with
a table of greedy completions and one of teacher-forced likelihoods. A key is the sha256 of
everything that can change the value (see :func:`key`); every answer is committed as soon as it
exists, so Ctrl-C loses at most the answers in progress.

The cache is simonsca's own file, and it survives a bad disk: a file that is not a sqlite
database, is truncated or corrupt, or is a folder, is renamed aside (nothing is deleted) with a
one-line warning and a fresh cache is started; a cache locked by another process is waited for
(with a message), then refused in one line (:class:`CacheLocked`).
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import sys
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from simonsca.errors import SimonscaError
from simonsca.models.base import AnswerLikelihood, Completion

#: Seconds to wait for another process's lock before saying so, and in all.
LOCK_NOTICE_SECONDS = 2.0
LOCK_GIVE_UP_SECONDS = 60.0
_SCHEMA = (
    (
        "CREATE TABLE IF NOT EXISTS completions (key TEXT PRIMARY KEY, text TEXT NOT NULL, "
        "n_tokens INTEGER NOT NULL, finish_reason TEXT NOT NULL, created REAL NOT NULL)"
    ),
    (
        "CREATE TABLE IF NOT EXISTS likelihoods (key TEXT PRIMARY KEY, value TEXT NOT NULL, "
        "created REAL NOT NULL)"
    ),
)


class CacheLocked(SimonscaError):
    """Another process holds the cache's lock for too long."""


def cache_dir() -> Path:
    """Where simonsca keeps models and cached answers: ``$SIMONSCA_CACHE`` or
    ``~/.cache/simonsca``."""
    return Path(os.environ.get("SIMONSCA_CACHE") or Path.home() / ".cache" / "simonsca")


def default_cache_path() -> Path:
    return cache_dir() / "completions.sqlite3"


def key(fields: Mapping[str, Any]) -> str:
    """The sha256 of ``fields`` as canonical JSON: what identifies one cached value."""
    blob = json.dumps(fields, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def _warn(message: str) -> None:
    print(f"simonsca: {message}", file=sys.stderr)


def _one_line(error: object, limit: int = 200) -> str:
    """sqlite's own words, on one line (``quick_check`` reports one line per damaged page)."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    text = lines[0] if lines else type(error).__name__
    if len(lines) > 1:
        text += f" (+{len(lines) - 1} more lines)"
    return text if len(text) <= limit else text[: limit - 3] + "..."


class AnswerCache:
    """Completions and likelihoods in one sqlite3 file, committed per answer."""

    def __init__(
        self, path: str | os.PathLike[str], *, warn: Callable[[str], None] = _warn
    ) -> None:
        self.path = Path(path)
        self._warn = warn
        self._db = self._open()

    # -- opening, repairing ------------------------------------------------------------------

    def _open(self) -> sqlite3.Connection:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise SimonscaError(
                f"cannot create the cache folder {self.path.parent}: {error.strerror or error}; set "
                "SIMONSCA_CACHE to a writable folder or pass --no-cache"
            ) from None
        if self.path.is_dir() or (self.path.exists() and not self.path.is_file()):
            self._move_aside("is not a file")
        for attempt in range(2):
            db = None
            try:
                db = sqlite3.connect(self.path, timeout=LOCK_NOTICE_SECONDS)
                self._prepare(db)
                return db
            except sqlite3.OperationalError as error:
                if db is not None:
                    db.close()
                if _locked(error):
                    return self._wait_for_lock()
                if attempt or not self.path.exists():
                    raise self._unusable(error) from None
                self._move_aside(f"cannot be used ({_one_line(error)})")
            except sqlite3.DatabaseError as error:
                if db is not None:
                    db.close()
                if attempt:
                    raise self._unusable(error) from None
                self._move_aside(f"is not a usable sqlite database ({_one_line(error)})")
        raise AssertionError("unreachable")

    @staticmethod
    def _prepare(db: sqlite3.Connection) -> None:
        row = db.execute("PRAGMA quick_check").fetchone()
        if row is None or row[0] != "ok":
            said = _one_line(row[0]) if row else "nothing"
            raise sqlite3.DatabaseError(f"quick_check says {said}")
        for statement in _SCHEMA:
            db.execute(statement)
        db.commit()

    def _wait_for_lock(self) -> sqlite3.Connection:
        self._warn(
            f"the answer cache {self.path} is locked by another process (another simonsca "
            f"run?); waiting up to {LOCK_GIVE_UP_SECONDS:g} s"
        )
        db = sqlite3.connect(self.path, timeout=LOCK_GIVE_UP_SECONDS)
        try:
            self._prepare(db)
            return db
        except sqlite3.OperationalError as error:
            db.close()
            if _locked(error):
                raise CacheLocked(
                    f"the answer cache {self.path} stayed locked by another process for "
                    f"{LOCK_GIVE_UP_SECONDS:g} s; wait for that run to finish or pass --no-cache"
                ) from None
            raise self._unusable(error) from None
        except sqlite3.DatabaseError as error:
            db.close()
            raise self._unusable(error) from None

    def _move_aside(self, why: str) -> None:
        stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
        # Unique, so that a second broken file never replaces the first one moved aside.
        aside = self.path.with_name(f"{self.path.name}.broken-{stamp}-{uuid.uuid4().hex[:8]}")
        try:
            os.replace(self.path, aside)
            for suffix in ("-journal", "-wal", "-shm"):
                side = self.path.with_name(self.path.name + suffix)
                if side.exists():
                    os.replace(side, aside.with_name(aside.name + suffix))
        except OSError as error:
            raise SimonscaError(
                f"the answer cache {self.path} {why}, and it cannot be moved aside "
                f"({error.strerror or error}); move it yourself or pass --no-cache"
            ) from None
        self._warn(f"the answer cache {self.path} {why}; moved it to {aside} and started afresh")

    def _unusable(self, error: Exception) -> SimonscaError:
        return SimonscaError(
            f"the answer cache {self.path} cannot be used ({_one_line(error)}); set SIMONSCA_CACHE "
            "elsewhere or pass --no-cache"
        )

    def _execute(self, sql: str, args: tuple[Any, ...] = (), *, write: bool = False) -> Any:
        try:
            if write:
                with self._db:  # one transaction per answer: an interrupt never leaves half a row
                    return self._db.execute(sql, args)
            return self._db.execute(sql, args)
        except sqlite3.OperationalError as error:
            if _locked(error):
                raise CacheLocked(
                    f"the answer cache {self.path} is locked by another process; wait for that "
                    "run to finish or pass --no-cache"
                ) from None
            raise self._unusable(error) from None
        except sqlite3.DatabaseError as error:
            raise self._unusable(error) from None

    # -- values --------------------------------------------------------------------------------

    def get_completion(self, k: str) -> Completion | None:
        row = self._execute(
            "SELECT text, n_tokens, finish_reason FROM completions WHERE key = ?", (k,)
        ).fetchone()
        if row is None:
            return None
        return Completion(text=row[0], n_tokens=int(row[1]), finish_reason=row[2])

    def put_completion(self, k: str, completion: Completion) -> None:
        self._execute(
            "INSERT OR REPLACE INTO completions VALUES (?, ?, ?, ?, ?)",
            (k, completion.text, completion.n_tokens, completion.finish_reason, time.time()),
            write=True,
        )

    def get_likelihood(self, k: str) -> AnswerLikelihood | None:
        row = self._execute("SELECT value FROM likelihoods WHERE key = ?", (k,)).fetchone()
        if row is None:
            return None
        data = json.loads(row[0])
        return AnswerLikelihood(
            token_ends=tuple(data["token_ends"]),
            logprobs=tuple(data["logprobs"]),
            margins=tuple(data["margins"]),
            stop_logprob=float(data["stop_logprob"]),
            stop_greedy=bool(data["stop_greedy"]),
            boundary=str(data["boundary"]),
        )

    def put_likelihood(self, k: str, value: AnswerLikelihood) -> None:
        self._execute(
            "INSERT OR REPLACE INTO likelihoods VALUES (?, ?, ?)",
            (k, json.dumps(asdict(value)), time.time()),
            write=True,
        )

    def __len__(self) -> int:
        row = self._execute(
            "SELECT (SELECT COUNT(*) FROM completions) + (SELECT COUNT(*) FROM likelihoods)"
        ).fetchone()
        return int(row[0])

    def close(self) -> None:
        self._db.close()


def _locked(error: sqlite3.OperationalError) -> bool:
    text = str(error).lower()
    return "locked" in text or "busy" in text


def open_cache(enabled: bool, path: str | os.PathLike[str] | None = None) -> AnswerCache | None:
    """The default answer cache, or ``None`` when caching is off (``--no-cache``)."""
    return AnswerCache(path or default_cache_path()) if enabled else None
