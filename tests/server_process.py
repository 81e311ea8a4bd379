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


#: Largest in-process margin (nats) of a token in a served answer that differs from the
#: in-process one, for the difference to count as a near-tie that llama.cpp's batching decided.
#: Measured with llama-server's defaults: at most 0.40.
NEAR_TIE = 1.0


def largest_margin(model: object, prompt: str, answer: str) -> tuple[float, int]:
    """The largest in-process log-prob margin among ``answer``'s tokens (0: greedy decoding
    writes each one), forced one token per decode as generation decodes them, and its token."""
    from simonsca.models.base import LikelihoodRequest

    request = LikelihoodRequest(prompt, answer, stop="")
    [(_, forced)] = list(model.likelihood_many([request], stepwise=True))  # type: ignore[attr-defined]
    if not forced.margins:
        return 0.0, -1
    worst = max(range(len(forced.margins)), key=lambda k: forced.margins[k])
    return forced.margins[worst], worst


def early_stopped_parity(
    local: object, served: object, items: Sequence[object], *, counts_stop_token: bool = True
) -> tuple[int, int]:
    """Answer ``items`` in-process and through the server with early stop on (the default);
    returns (answers identical in text, finish reason, token count and score; answers cut).

    An answer that differs must part at a near-tie (the served text's largest in-process margin
    below :data:`NEAR_TIE`: the two decode the prompt in other groupings), and is printed.
    ``counts_stop_token=False``: the server's stream does not say how many tokens it generated,
    so an answer that ran to its end counts the tokens of its text, one fewer than in-process
    where a stop string ended it (the stop's own token); cut answers count alike either way."""
    from simonsca.runner import generate
    from simonsca.scoring import score_item

    runs = [
        generate(model, items, early_stop=True, cache=None, progress=False)  # type: ignore[arg-type]
        for model in (local, served)
    ]
    in_process, remote = (run.predictions for run in runs)
    identical = 0
    for item, a, b in zip(items, in_process, remote, strict=True):
        if b.text != a.text:
            margin, token = largest_margin(local, a.prompt, b.text)
            print(
                f"\n  seed {a.seed} parts at a near-tie: in-process {a.text[:24]!r}..., served "
                f"{b.text[:24]!r}...; served answer's largest in-process margin {margin:.4f} "
                f"nats (token {token})"
            )
            assert margin < NEAR_TIE
            continue
        where = f"seed {a.seed} {a.text!r}: in-process {a.finish_reason}, {a.n_tokens} tokens; "
        where += f"served {b.finish_reason}, {b.n_tokens} tokens"
        assert b.finish_reason == a.finish_reason, where
        stop_token = not counts_stop_token and a.finish_reason == "stop"
        assert b.n_tokens in ((a.n_tokens, a.n_tokens - 1) if stop_token else (a.n_tokens,)), where
        assert score_item(item, b.text) == score_item(item, a.text)  # type: ignore[arg-type]
        identical += 1
    cut = sum(p.finish_reason == "cut" for p in in_process)
    print(f"\nearly stop on: {identical} of {len(items)} answers identical; {cut} cut in-process")
    return identical, cut
