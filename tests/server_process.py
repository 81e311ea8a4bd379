"""Real model servers for the tests: a free port, and a server process that runs while a block
does (started, waited for until it answers, and stopped however the block ends)."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import httpx
import pytest


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on (at the time of asking)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def running_server(
    command: Sequence[str],
    *,
    ready_url: str,
    log: Path,
    name: str,
    startup_seconds: float,
    poll_seconds: float = 0.5,
) -> Iterator[None]:
    """Run ``command`` (its output in ``log``) until the block ends; the block starts once
    ``ready_url`` answers 200. A server that exits or is not ready in ``startup_seconds`` fails
    the test with the end of its log."""
    with log.open("wb") as out:
        process = subprocess.Popen(list(command), stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + startup_seconds
        while True:
            if process.poll() is not None:
                pytest.fail(f"{name} exited ({process.returncode}): {log.read_text()[-3000:]}")
            try:
                if httpx.get(ready_url, timeout=5).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"{name} not ready in {startup_seconds} s: {log.read_text()[-3000:]}")
            time.sleep(poll_seconds)
        yield
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
