"""The HTTP backend against a real server: llama-cpp-python's own (``python -m llama_cpp.server``)
serving the real Gemma 3 270M, compared with the in-process backend on the same items.

Needs ``llama-cpp-python[server]``; skipped (with the reason) without it. The server decodes one
request at a time in batches of 512 where the in-process backend uses micro-batches of 64, so the
logits differ in the last bits (measured: at most ~4e-7 nats); a differing answer is printed with
the in-process log-prob margin where the two answers part.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from server_process import early_stopped_parity, free_port, running_server

from simonsca.dataset import eval_items, make_item
from simonsca.errors import ContextTooSmall
from simonsca.models.base import GenerationRequest, LikelihoodRequest, max_tokens_for
from simonsca.models.served import ServedModel, ServerError, open_served_model

pytestmark = [pytest.mark.model, pytest.mark.server]

N_CTX = 1024
# v5 items with sides of 5-6 (both tasks, both symbol families), as in test_models.py
SEEDS = (2, 140, 165, 176, 269)
# Teacher forcing through llama-cpp-python's echo costs ~0.4 s per prompt token with Gemma's
# 262k vocabulary (the server sorts the vocabulary in Python per token): two items.
FORCED_SEEDS = (140, 269)
STARTUP_SECONDS = 180
# default eval items for the early-stop parity
N_PARITY = 6


@pytest.fixture(scope="session")
def server_url(gemma_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """llama-cpp-python's server with the real Gemma on a free port, killed at the end."""
    pytest.importorskip("uvicorn", reason="needs llama-cpp-python[server]")
    pytest.importorskip("fastapi", reason="needs llama-cpp-python[server]")
    port = free_port()
    log = tmp_path_factory.mktemp("server") / "llama_cpp_server.log"
    command = [
        sys.executable, "-m", "llama_cpp.server",
        "--model", str(gemma_path),
        "--n_ctx", str(N_CTX),
        "--n_threads", "2",
        "--logits_all", "true",
        "--host", "127.0.0.1",
        "--port", str(port),
    ]  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    with running_server(
        command,
        ready_url=url + "/v1/models",
        log=log,
        name="llama-cpp-python's server",
        startup_seconds=STARTUP_SECONDS,
    ):
        yield url + "/v1"


@pytest.fixture(scope="session")
def served(server_url: str) -> Iterator[ServedModel]:
    model = open_served_model(server_url)
    yield model
    model.close()


def test_startup_records_what_the_server_serves(served: ServedModel, gemma_path: Path) -> None:
    assert served.facts.kind == "llama-cpp-python"
    assert served.facts.model == str(gemma_path)
    assert served.facts.context_length == N_CTX  # probed: the server does not report it
    assert served.capabilities == {"generate", "teacher-forced"}
    assert served.batch_size == 1
    assert served.info.sha256 is None and str(served.info.served["identity"]).startswith("served:")


def test_token_counts_equal_the_in_process_tokenizer(served: ServedModel, gemma: object) -> None:
    for seed in SEEDS:
        item = make_item(seed)
        for text in (item.output, item.prompt):
            assert served.count_tokens(text) == gemma.count_tokens(text)  # type: ignore[attr-defined]


def test_greedy_answers_equal_the_in_process_backend(served: ServedModel, gemma: object) -> None:
    items = [make_item(seed) for seed in SEEDS]
    requests = [
        GenerationRequest(item.prompt, max_tokens_for(gemma.count_tokens(item.output)))  # type: ignore[attr-defined]
        for item in items
    ]
    t0 = time.perf_counter()
    local = dict(gemma.complete_many(requests))  # type: ignore[attr-defined]
    t1 = time.perf_counter()
    remote = dict(served.complete_many(requests))
    t2 = time.perf_counter()
    same = [local[i] == remote[i] for i in range(len(items))]
    print(
        f"\ngreedy agreement: {sum(same)} of {len(items)} answers identical "
        f"(in-process {t1 - t0:.1f} s, server {t2 - t1:.1f} s)"
    )
    for i, ok in enumerate(same):
        if not ok:
            print("  " + _explain(gemma, requests[i].prompt, local[i].text, remote[i].text))
    # Without the reset request before each one (see _LlamaCppPython), seed 269 parted from the
    # in-process answer at character 12 after seed 176 had run (margin 0.024 nats: not noise).
    assert all(same)


def test_early_stopped_answers_and_scores_equal_the_in_process_backend(
    served: ServedModel, gemma: object
) -> None:
    """Early stop (on by default) streams the answer and closes the stream where the in-process
    backend stops generating: the same texts and scores (its stream reports no token count, so
    an answer that a stop string ended counts that string's token less)."""
    items = eval_items(N_PARITY)
    identical, cut = early_stopped_parity(gemma, served, items, counts_stop_token=False)
    assert identical >= N_PARITY - 1 and cut >= 1  # measured: 5 identical (1 near-tie), 4 cut


def _explain(gemma: object, prompt: str, a: str, b: str) -> str:
    """Where two answers part, and the in-process log-prob margin between the two choices
    there (a near-tie explains a flip under other batching)."""
    at = next((k for k, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
    prefix = a[:at]
    margins = []
    for text in (a, b):
        nxt = text[at : at + 1]
        if not nxt:
            return f"answers part at character {at}: one ends there"
        forced = gemma.likelihood(prompt, prefix + nxt, stop="")  # type: ignore[attr-defined]
        margins.append(forced.logprobs[-1])
    return (
        f"answers part at character {at} ({a[at : at + 12]!r} vs {b[at : at + 12]!r}); "
        f"in-process log-probs there {margins[0]:.4f} vs {margins[1]:.4f} "
        f"(margin {abs(margins[0] - margins[1]):.4f} nats)"
    )


def test_teacher_forced_log_probs_agree_with_the_in_process_backend(
    served: ServedModel, gemma: object
) -> None:
    requests = [
        LikelihoodRequest(make_item(seed).prompt, make_item(seed).output) for seed in FORCED_SEEDS
    ]
    local = dict(gemma.likelihood_many(requests))  # type: ignore[attr-defined]
    t0 = time.perf_counter()
    remote = dict(served.likelihood_many(requests))
    seconds = time.perf_counter() - t0
    worst = 0.0
    flips = 0
    tokens = 0
    for i in range(len(requests)):
        a, b = local[i], remote[i]
        assert a.token_ends == b.token_ends and a.boundary == b.boundary
        worst = max([worst, *(abs(x - y) for x, y in zip(a.logprobs, b.logprobs))])
        worst = max(worst, abs(a.stop_logprob - b.stop_logprob))
        worst = max([worst, *(abs(x - y) for x, y in zip(a.margins, b.margins))])
        flips += sum(x != y for x, y in zip(a.greedy, b.greedy))
        tokens += a.n_tokens
        assert b.nll == pytest.approx(a.nll, abs=0.01)
    print(
        f"\nteacher forcing: {tokens} answer tokens, largest |log-prob or margin difference| {worst:.2e} "
        f"nats, {flips} greedy flags differ; server {seconds:.1f} s"
    )
    assert worst < 0.05
    assert flips <= 1


def test_concurrency_two_against_one(server_url: str, gemma: object) -> None:
    """llama-cpp-python's server decodes one request at a time (a lock), so two in flight only
    overlap the HTTP round trips: the speed-up is about 1."""
    items = [make_item(seed) for seed in SEEDS[:4]]
    requests = [GenerationRequest(item.prompt, 24) for item in items]
    timings: dict[int, list[float]] = {1: [], 2: []}
    answers = {}
    for concurrency in (1, 2, 1, 2):  # interleaved: other load on the machine hits both
        with open_served_model(server_url, concurrency=concurrency) as model:
            t0 = time.perf_counter()
            answers[concurrency] = dict(model.complete_many(requests))
            timings[concurrency].append(time.perf_counter() - t0)
    one, two = min(timings[1]), min(timings[2])
    print(
        f"\nconcurrency 1: {one:.1f} s, concurrency 2: {two:.1f} s (best of 2 each; "
        f"speed-up x{one / two:.2f}) for {len(requests)} requests"
    )
    assert answers[1] == answers[2]


# --- faults, each one clear line ------------------------------------------------------------


def _one_line(error: BaseException) -> str:
    message = str(error)
    assert message and "\n" not in message and "Traceback" not in message
    return message


def test_a_down_server_is_one_line() -> None:
    with pytest.raises(ServerError) as info:
        open_served_model(f"http://127.0.0.1:{free_port()}/v1")
    assert "no server answers" in _one_line(info.value)


def test_a_wrong_url_is_one_line(server_url: str) -> None:
    with pytest.raises(ServerError) as info:
        open_served_model(server_url.removesuffix("/v1") + "/api/v9")
    assert "no server simonsca knows" in _one_line(info.value)


def test_an_unknown_model_name_is_one_line(server_url: str) -> None:
    with pytest.raises(ServerError) as info:
        open_served_model(server_url + "#llama-3-8b")
    message = _one_line(info.value)
    assert "'llama-3-8b' is not served" in message and "gemma-3-270m-q4_k_m.gguf" in message


def test_a_prompt_longer_than_the_served_context_is_one_line(served: ServedModel) -> None:
    prompt = make_item(2).prompt * 12  # ~1200 tokens > 1024
    with pytest.raises(ContextTooSmall) as info:
        served.complete(prompt, max_tokens=16)
    assert "served context of 1024" in _one_line(info.value)


def test_the_server_refusal_itself_is_one_line(server_url: str) -> None:
    """Without the pre-check (a context the client does not know), the server's own refusal
    is still one line, not a traceback."""
    with open_served_model(server_url) as model:
        object.__setattr__(model.facts, "context_length", None)
        with pytest.raises(ContextTooSmall) as info:
            model.complete(make_item(2).prompt * 12, max_tokens=16)
    assert "maximum context length is 1024" in _one_line(info.value)
