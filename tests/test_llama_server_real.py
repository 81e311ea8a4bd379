"""The HTTP backend against llama.cpp's real ``llama-server``, built from the llama.cpp that
llama-cpp-python 0.3.36 vendors (the same llama.cpp the in-process backend runs), serving the real
Gemma 3 270M with the positive-control LoRA loaded but not applied, on two slots.

The binary comes from ``fixtures/build_llama_server.sh`` (cached under
``$SIMONSCA_CACHE/llama-server-0.3.36/``, or named by ``SIMONSCA_LLAMA_SERVER``). Without it these
tests are skipped with that reason, unless ``SIMONSCA_BUILD_LLAMA_SERVER=1`` asks them to build it
first (about 7 minutes on 2 cores).

What they compare, through simonsca's backend, with the in-process
:class:`~simonsca.models.llamacpp.LlamaCppModel` on the same items: greedy answers of the base
model, teacher-forced log-probabilities, base and base + LoRA from one server (per-request
``lora`` scales; ``URL#adapter`` picks the adapter), and one slot against two.

llama.cpp's logits on a CPU depend on how tokens are grouped into decode calls (the repacked
Q4_K kernels for a batch are not the one-token ones): the in-process backend's own teacher forcing
moves by up to 0.34 nats between one big batch and one token per call. The server computes what
the in-process backend computes only under :data:`MATCHING` (measured: 6 of 6 greedy answers
identical with it; 1 of 6 with llama-server's defaults, every difference a near-tie).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from server_process import (
    NEAR_TIE,
    early_stopped_parity,
    free_port,
    largest_margin,
    running_server,
)

from simonsca.cache import cache_dir
from simonsca.dataset import eval_items
from simonsca.errors import ConfigError, ContextTooSmall
from simonsca.models.base import (
    AnswerLikelihood,
    Completion,
    GenerationRequest,
    LikelihoodRequest,
    max_tokens_for,
)
from simonsca.models.served import ServedModel, open_served_model
from simonsca.tasks import Item

LLAMA_CPP_PYTHON_VERSION = "0.3.36"
BUILD_SCRIPT = Path(__file__).resolve().parent.parent / "fixtures" / "build_llama_server.sh"
N_SLOTS = 2
N_CTX = 2048  # the server's whole context: 1024 per slot, as the in-process `gemma` fixture
SLOT_CTX = N_CTX // N_SLOTS
N_ITEMS = 6
FORCED_ITEMS = 2
STARTUP_SECONDS = 120
#: Server options under which it computes what the in-process backend computes: flash attention
#: off (as LlamaCppModel sets it), and a full-size cache for Gemma 3's sliding-window layers, so
#: that a request sharing a prefix with the slot's last one decodes only its new tokens. Without
#: --swa-full, llama-server's SWA checkpoints re-decode the prompt's last few tokens together
#: (measured: 6 per teacher-forcing request), or with --ctx-checkpoints 0 the whole prefix.
MATCHING = ("-fa", "off", "--swa-full")
#: Threads for the server: half the CPUs, so that a busy machine does not leave its threads
#: spinning at barriers for a descheduled partner (measured on 2 shared cores with -t 2: 0.4-1.3 s
#: per token instead of 0.02). The thread count does not move the logits.
THREADS = max(1, (os.cpu_count() or 2) // 2)
#: Largest |log-prob| difference allowed between the server's teacher forcing and the in-process
#: backend's stepwise forcing (one answer token per decode call, as the server decodes them).
#: Measured: 5.5e-4 nats at most, median 2e-5 (the server sums its softmax over 262,144 tokens in
#: float32).
TOLERANCE = 1e-3


def _cached_binary() -> Path:
    return cache_dir() / f"llama-server-{LLAMA_CPP_PYTHON_VERSION}" / "llama-server"


def _why_skip() -> str | None:
    """Why these tests cannot run: no binary, and no leave to build one."""
    if os.environ.get("SIMONSCA_LLAMA_SERVER") or os.environ.get("SIMONSCA_BUILD_LLAMA_SERVER"):
        return None
    if _cached_binary().is_file():
        return None
    return (
        f"no llama-server at {_cached_binary()}: build it with fixtures/{BUILD_SCRIPT.name} "
        "(about 7 minutes on 2 cores), or set SIMONSCA_BUILD_LLAMA_SERVER=1 to build it here"
    )


# Decided when the module is collected, so a skip costs no model loading.
_SKIP = _why_skip()
pytestmark = [
    pytest.mark.model,
    pytest.mark.server,
    pytest.mark.skipif(_SKIP is not None, reason=_SKIP or ""),
]


@pytest.fixture(scope="session")
def llama_server_binary() -> Path:
    """The llama-server binary: ``SIMONSCA_LLAMA_SERVER``, else the cached build, else built
    now by fixtures/build_llama_server.sh (``SIMONSCA_BUILD_LLAMA_SERVER`` is set)."""
    explicit = os.environ.get("SIMONSCA_LLAMA_SERVER")
    if explicit:
        if not os.access(explicit, os.X_OK):
            pytest.fail(f"SIMONSCA_LLAMA_SERVER={explicit} is not an executable file")
        return Path(explicit)
    if _cached_binary().is_file():
        return _cached_binary()
    built = subprocess.run(
        ["bash", str(BUILD_SCRIPT)],
        env={**os.environ, "PYTHON": sys.executable},
        capture_output=True,
        text=True,
        check=False,
    )
    if built.returncode != 0:
        pytest.fail(f"{BUILD_SCRIPT} failed ({built.returncode}): {built.stderr[-3000:]}")
    return Path(built.stdout.strip().splitlines()[-1])


@contextlib.contextmanager
def llama_server(
    binary: Path, model: Path, adapter: Path, log_dir: Path, options: Sequence[str] = ()
) -> Iterator[str]:
    """llama-server with ``model`` and ``adapter`` (scale 0 until a request sets it) on two
    slots and a free port; its URL, until the block ends."""
    port = free_port()
    log = log_dir / f"llama_server_{port}.log"
    command = [
        str(binary),
        "-m", str(model),
        "--host", "127.0.0.1",
        "--port", str(port),
        "-c", str(N_CTX),
        "-np", str(N_SLOTS),
        "-t", str(THREADS),
        "--lora", str(adapter),
        "--lora-init-without-apply",
        *options,
    ]  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    with running_server(
        command,
        ready_url=url + "/health",
        log=log,
        name="llama-server",
        startup_seconds=STARTUP_SECONDS,
        poll_seconds=0.25,
    ):
        yield url


@pytest.fixture(scope="session")
def control_adapter() -> Path:
    from simonsca.default_models import CONTROL_ADAPTER

    return CONTROL_ADAPTER


@pytest.fixture(scope="module")
def server_url(
    llama_server_binary: Path,
    gemma_path: Path,
    control_adapter: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[str]:
    """The server computing what the in-process backend computes (:data:`MATCHING`)."""
    log_dir = tmp_path_factory.mktemp("server")
    with llama_server(llama_server_binary, gemma_path, control_adapter, log_dir, MATCHING) as url:
        yield url


@pytest.fixture(scope="module")
def served(server_url: str) -> Iterator[ServedModel]:
    model = open_served_model(server_url)
    yield model
    model.close()


@pytest.fixture(scope="module")
def items() -> list[Item]:
    return eval_items(N_ITEMS)


@pytest.fixture(scope="module")
def requests(items: list[Item], gemma: object) -> list[GenerationRequest]:
    return [
        GenerationRequest(item.prompt, max_tokens_for(gemma.count_tokens(item.output)))  # type: ignore[attr-defined]
        for item in items
    ]


@pytest.fixture(scope="module")
def in_process_answers(gemma: object, requests: list[GenerationRequest]) -> dict[int, Completion]:
    return dict(gemma.complete_many(requests))  # type: ignore[attr-defined]


def _compare(
    label: str,
    model: object,
    requests: Sequence[GenerationRequest],
    local: dict[int, Completion],
    remote: dict[int, Completion],
) -> tuple[int, float]:
    """Print how many answers are identical and, for each that is not, where the two part and
    the largest in-process margin of the served answer; returns (identical, largest margin)."""
    same = sum(local[i] == remote[i] for i in range(len(requests)))
    print(f"\n{label}: {same} of {len(requests)} answers identical")
    largest = 0.0
    for i in range(len(requests)):
        a, b = local[i], remote[i]
        if a == b:
            continue
        at = next((k for k, (x, y) in enumerate(zip(a.text, b.text)) if x != y), None)
        at = min(len(a.text), len(b.text)) if at is None else at
        margin, token = largest_margin(model, requests[i].prompt, b.text)
        largest = max(largest, margin)
        print(
            f"  item {i}: part at character {at} ({a.text[at : at + 10]!r} in-process vs "
            f"{b.text[at : at + 10]!r} served; {a.n_tokens}/{b.n_tokens} tokens); the served "
            f"answer's largest in-process margin: {margin:.4f} nats (its token {token})"
        )
    return same, largest


def test_startup_records_slots_context_and_the_adapter(
    served: ServedModel, gemma_path: Path, control_adapter: Path
) -> None:
    facts = served.facts
    assert facts.kind == "llama-server" and facts.slots == N_SLOTS
    assert facts.context_length == SLOT_CTX  # per slot: the server reports slot n_ctx
    assert served.batch_size == N_SLOTS
    assert facts.model == str(gemma_path) and facts.details["model_path"] == str(gemma_path)
    assert [a["path"] for a in facts.adapters] == [str(control_adapter)]
    assert facts.lora == ((0, 0.0),)  # the base: the adapter explicitly at scale 0
    assert facts.version and facts.version.startswith("b")
    assert served.capabilities == {"generate", "teacher-forced"}


def test_a_model_without_a_chat_template_is_refused_not_chatted_with_in_chatml(
    served: ServedModel,
) -> None:
    """Gemma 3 270M base has no chat template; /props then shows llama-server's built-in ChatML.
    Chat mode refuses, as the in-process backend does, unless a fallback is named."""
    assert served.facts.chat_template is None and served.info.chat_template_source is None
    with pytest.raises(ConfigError, match="no chat template.*--chat-template") as info:
        served.chat_prompt("hello")
    assert "\n" not in str(info.value)
    with open_served_model(served.url, chat_template="gemma") as model:
        assert model.chat_prompt("hello").startswith("<start_of_turn>user\nhello")


def test_token_counts_equal_the_in_process_tokenizer(
    served: ServedModel, gemma: object, items: list[Item]
) -> None:
    for item in items[:3]:
        for text in (item.output, item.prompt):
            assert served.count_tokens(text) == gemma.count_tokens(text)  # type: ignore[attr-defined]


def test_greedy_answers_of_the_base_equal_the_in_process_backend(
    served: ServedModel,
    gemma: object,
    requests: list[GenerationRequest],
    in_process_answers: dict[int, Completion],
) -> None:
    with open_served_model(served.url, concurrency=1) as one_at_a_time:
        t0 = time.perf_counter()
        remote = dict(one_at_a_time.complete_many(requests))
    print(f"\nserver: {time.perf_counter() - t0:.1f} s for {len(requests)} answers")
    same, largest = _compare("base, greedy", gemma, requests, in_process_answers, remote)
    assert same >= N_ITEMS - 1  # measured: all 6
    assert largest < NEAR_TIE


def test_early_stopped_answers_and_scores_equal_the_in_process_backend(
    served: ServedModel, gemma: object, items: list[Item]
) -> None:
    """Early stop (on by default) streams the answer and closes the stream where the in-process
    backend stops generating: the same texts, token counts and scores."""
    with open_served_model(served.url, concurrency=1) as one_at_a_time:
        identical, cut = early_stopped_parity(gemma, one_at_a_time, items)
    assert identical >= N_ITEMS - 1 and cut >= 1  # measured: 6 identical, 4 cut


def test_greedy_answers_with_the_servers_default_batching_differ_only_at_near_ties(
    llama_server_binary: Path,
    gemma: object,
    gemma_path: Path,
    control_adapter: Path,
    requests: list[GenerationRequest],
    in_process_answers: dict[int, Completion],
    tmp_path: Path,
) -> None:
    """With llama-server's defaults (flash attention on, SWA checkpoints) the logits move a
    little, and answers flip where the base model hesitates between two tokens: measured, 1 of 6
    answers identical, the largest in-process margin of a served token 0.40 nats."""
    with (
        llama_server(llama_server_binary, gemma_path, control_adapter, tmp_path) as url,
        open_served_model(url, concurrency=1) as model,
    ):
        remote = dict(model.complete_many(requests))
    _, largest = _compare(
        "base, greedy, server defaults", gemma, requests, in_process_answers, remote
    )
    assert largest < NEAR_TIE


def test_teacher_forced_log_probs_equal_the_in_process_backend(
    served: ServedModel, gemma: object, items: list[Item]
) -> None:
    """One request at a time: two in flight on two slots share decode calls, which moves the
    logits as batching does (measured: up to 0.36 nats)."""
    requests = [LikelihoodRequest(item.prompt, item.output) for item in items[:FORCED_ITEMS]]
    # an answer ending in a line break: the stop merges with it into one token
    requests.append(LikelihoodRequest(items[0].prompt, items[0].output + "\n"))
    with open_served_model(served.url, concurrency=1) as one_at_a_time:
        t0 = time.perf_counter()
        remote = dict(one_at_a_time.likelihood_many(requests))
        seconds = time.perf_counter() - t0
    together = dict(served.likelihood_many(requests))  # two slots, two in flight
    stepwise = dict(gemma.likelihood_many(requests, stepwise=True))  # type: ignore[attr-defined]
    batched = dict(gemma.likelihood_many(requests))  # type: ignore[attr-defined]

    def differences(
        local: dict[int, AnswerLikelihood], remote: dict[int, AnswerLikelihood]
    ) -> tuple[float, int]:
        worst, flips = 0.0, 0
        for i in range(len(requests)):
            a, b = local[i], remote[i]
            assert (a.token_ends, a.boundary, a.n_tokens) == (b.token_ends, b.boundary, b.n_tokens)
            pairs = [*zip(a.logprobs, b.logprobs), *zip(a.margins, b.margins)]
            pairs.append((a.stop_logprob, b.stop_logprob))
            worst = max([worst, *(abs(x - y) for x, y in pairs)])
            flips += sum(x != y for x, y in zip(a.greedy, b.greedy))
            flips += a.stop_greedy != b.stop_greedy
        return worst, flips

    exact, exact_flips = differences(stepwise, remote)
    noisy, noisy_flips = differences(batched, remote)
    paired, paired_flips = differences(stepwise, together)
    tokens = sum(r.n_tokens for r in remote.values())
    print(
        f"\nteacher forcing, {tokens} answer tokens (server {seconds:.1f} s): largest |log-prob, "
        f"margin or stop log-prob difference| {exact:.1e} nats against the in-process stepwise "
        f"forcing ({exact_flips} greedy flags differ); against its batched forcing {noisy:.2f} "
        f"nats ({noisy_flips} flags differ: llama.cpp's batching noise); two requests in flight "
        f"on two slots {paired:.2f} nats ({paired_flips} flags differ)"
    )
    assert exact < TOLERANCE
    assert exact_flips == 0


def test_one_server_serves_the_base_and_the_adapter_by_name(
    server_url: str,
    gemma_path: Path,
    control_adapter: Path,
    requests: list[GenerationRequest],
) -> None:
    from simonsca.models import LlamaCppModel

    with open_served_model(f"{server_url}#{control_adapter.stem}", concurrency=1) as adapted:
        assert adapted.facts.lora == ((0, 1.0),)
        remote = dict(adapted.complete_many(requests))
    with open_served_model(server_url, concurrency=1) as base:
        remote_base = dict(base.complete_many(requests))
    with LlamaCppModel(gemma_path, lora_path=control_adapter, n_ctx=SLOT_CTX) as local_adapted:
        local = dict(local_adapted.complete_many(requests))
        same, largest = _compare("base + LoRA, greedy", local_adapted, requests, local, remote)
    differ = sum(remote[i].text != remote_base[i].text for i in range(len(requests)))
    print(f"the adapter's served answers differ from the base's on {differ} of {len(requests)}")
    assert differ >= N_ITEMS - 1  # measured: all 6
    assert same >= N_ITEMS - 1 and largest < NEAR_TIE  # measured: all 6 identical


def test_two_slots_against_one(server_url: str, requests: list[GenerationRequest]) -> None:
    """Two requests in flight decode together, one batch of two tokens per step. Batching moves
    the logits, so answers may change with the slot count; `decoding` keeps them apart."""
    batch = [GenerationRequest(r.prompt, 48, stop=()) for r in requests[:4]]
    timings: dict[int, list[float]] = {1: [], 2: []}
    answers: dict[int, dict[int, Completion]] = {}
    decoding = {}
    for concurrency in (1, 2, 1, 2):  # interleaved: other load on the machine hits both
        with open_served_model(server_url, concurrency=concurrency) as model:
            t0 = time.perf_counter()
            answers[concurrency] = dict(model.complete_many(batch))
            timings[concurrency].append(time.perf_counter() - t0)
            decoding[concurrency] = dict(model.decoding)
    one, two = min(timings[1]), min(timings[2])
    same = sum(answers[1][i] == answers[2][i] for i in range(len(batch)))
    print(
        f"\n{len(batch)} requests of 48 tokens: 1 slot {one:.2f} s, 2 slots {two:.2f} s (best of "
        f"2 each; {os.cpu_count()} CPUs): speed-up x{one / two:.2f}; {same} of {len(batch)} "
        "answers identical"
    )
    assert decoding[1] != decoding[2]  # the completion cache never mixes the two
    assert all(answers[c][i].n_tokens == 48 for c in (1, 2) for i in range(len(batch)))


def test_a_prompt_longer_than_a_slot_is_one_line(served: ServedModel, items: list[Item]) -> None:
    prompt = items[0].prompt * 16  # ~1,550 tokens > 1,024 per slot
    with pytest.raises(ContextTooSmall) as info:
        served.complete(prompt, max_tokens=16)
    assert f"served context of {SLOT_CTX}" in str(info.value) and "\n" not in str(info.value)
    with open_served_model(served.url) as model:
        # without the client's check: the server's own refusal, and its cut-off answer
        object.__setattr__(model.facts, "context_length", None)
        with pytest.raises(ContextTooSmall, match="exceeds the available context size") as info:
            model.complete(prompt, max_tokens=16)
        assert "\n" not in str(info.value)
        fits = items[0].prompt * 10  # ~970 tokens, under 1,024: the answer overruns the slot
        n_prompt = model.count_tokens(fits) + 1
        assert n_prompt < SLOT_CTX
        with pytest.raises(ContextTooSmall, match="overran the server's context"):
            model.complete(fits, max_tokens=SLOT_CTX, stop=())
