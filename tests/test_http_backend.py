"""The HTTP backend's protocol, against a tiny in-test server that answers with bodies recorded
from each server's documentation (tests/server_bodies/README.md names the page of each).

Where a doc gives only the *shape* of a reply (llama-server's n_probs, vLLM's prompt_logprobs),
the test fills it from a toy one-character-per-token tokenizer, so the expected numbers are known.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from server_process import free_port

from simonsca.errors import ConfigError, ContextTooSmall, SimonscaError
from simonsca.models.base import GenerationRequest, LikelihoodRequest, Model
from simonsca.models.served import (
    SERVER_CHAT_PREFIX,
    SUPPORT,
    ScoringUnsupported,
    ServerError,
    is_model_url,
    open_served_model,
    parse_model_url,
    support_table,
)

BODIES = Path(__file__).parent / "server_bodies"

Reply = tuple[int, Any] | tuple[int, Any, dict[str, str]]
Route = Callable[[Any], Reply]


@dataclass
class Stream:
    """A streamed reply: server-sent ``data:`` events, ``delay`` seconds apart, then
    ``[DONE]``; ``sent`` counts the events written before the client hung up."""

    events: list[Any]
    delay: float = 0.01
    sent: int = 0
    hung_up: bool = False


def body(name: str) -> Any:
    return json.loads((BODIES / name).read_text())


@dataclass
class FakeServer:
    """An HTTP server on 127.0.0.1 answering (method, path) from ``routes``; everything else 404.
    It records each request and the most requests it had in flight at once."""

    routes: dict[tuple[str, str], Route]
    requests: list[tuple[str, str, Any]] = field(default_factory=list)
    in_flight: int = 0
    max_in_flight: int = 0
    delay: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def paths(self) -> list[str]:
        return [path for _, path, _ in self.requests]

    def bodies(self, path: str) -> list[Any]:
        return [b for _, p, b in self.requests if p == path]


def _handler(server: FakeServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def _serve(self, method: str) -> None:
            length = int(self.headers.get("content-length") or 0)
            raw = self.rfile.read(length) if length else b""
            data = json.loads(raw) if raw else None
            with server.lock:
                server.requests.append((method, self.path, data))
                server.in_flight += 1
                server.max_in_flight = max(server.max_in_flight, server.in_flight)
            try:
                time.sleep(server.delay)
                route = server.routes.get((method, self.path))
                reply: Reply = route(data) if route else (404, {"detail": "Not Found"})
            finally:
                with server.lock:
                    server.in_flight -= 1
            status, payload = reply[0], reply[1]
            headers = reply[2] if len(reply) == 3 else {}  # type: ignore[misc]
            if isinstance(payload, Stream):
                self._stream(payload)
                return
            out = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(out)))
            for key, value in headers.items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(out)

        def _stream(self, stream: Stream) -> None:
            self.send_response(200)
            self.send_header("content-type", "text/event-stream")
            self.end_headers()
            try:
                for event in [*stream.events, "[DONE]"]:
                    data = event if isinstance(event, str) else json.dumps(event)
                    self.wfile.write(f"data: {data}\n\n".encode())
                    self.wfile.flush()
                    stream.sent += 1
                    time.sleep(stream.delay)
            except (BrokenPipeError, ConnectionResetError):
                stream.hung_up = True

        def do_GET(self) -> None:
            self._serve("GET")

        def do_POST(self) -> None:
            self._serve("POST")

    return Handler


@pytest.fixture
def serve() -> Iterator[Callable[[dict[tuple[str, str], Route]], tuple[str, FakeServer]]]:
    started: list[ThreadingHTTPServer] = []

    def start(routes: dict[tuple[str, str], Route]) -> tuple[str, FakeServer]:
        fake = FakeServer(routes)
        httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(fake))
        httpd.daemon_threads = True
        threading.Thread(target=httpd.serve_forever, args=(0.02,), daemon=True).start()
        started.append(httpd)
        return f"http://127.0.0.1:{httpd.server_address[1]}", fake

    yield start
    for httpd in started:
        httpd.shutdown()
        httpd.server_close()


def fixed(payload: Any, status: int = 200) -> Route:
    return lambda _: (status, payload)


# A toy tokenizer: BOS = 1, then one token per character (id = 1000 + code point).
BOS = 1


def toy_tokens(text: str, bos: bool) -> list[int]:
    return ([BOS] if bos else []) + [1000 + ord(c) for c in text]


def toy_logprob(position: int, token: int) -> float:
    """The toy model's log-prob of ``token`` at ``position``: digits likely, others not."""
    return -0.25 if chr(token - 1000).isdigit() else -2.0 - 0.01 * position


# --- URLs -----------------------------------------------------------------------------------


def test_model_urls_parse_to_root_and_name() -> None:
    assert is_model_url("http://127.0.0.1:8080") and is_model_url(" HTTPS://h/v1")
    assert not is_model_url("models/gemma.gguf")
    assert parse_model_url("http://127.0.0.1:8080/v1") == ("http://127.0.0.1:8080", None)
    assert parse_model_url("http://127.0.0.1:8080/") == ("http://127.0.0.1:8080", None)
    assert parse_model_url("http://h:1234/v1#qwen2%2Fq4") == ("http://h:1234", "qwen2/q4")
    assert parse_model_url("https://h/proxy/v1/#m") == ("https://h/proxy", "m")


@pytest.mark.parametrize(
    "bad", ["ftp://h/x", "http://", "http://h:99999999", "http://h/v1?model=x"]
)
def test_bad_model_urls_are_one_line_config_errors(bad: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_model_url(bad)
    assert "\n" not in str(info.value)


def test_support_table_names_every_server_kind() -> None:
    table = support_table()
    for kind in SUPPORT:
        assert f"| {kind} |" in table
    assert SUPPORT["ollama"].teacher_forced is None and SUPPORT["lmstudio"].teacher_forced is None


# --- detection and what is served -----------------------------------------------------------


def llama_server_routes() -> dict[tuple[str, str], Route]:
    return {
        ("GET", "/props"): fixed(body("llama_server_props.json")),
        ("GET", "/v1/models"): fixed(body("llama_server_v1_models.json")),
        ("GET", "/lora-adapters"): fixed(body("llama_server_lora_adapters.json")),
    }


def test_llama_server_is_detected_with_its_slots_context_and_template(serve: Any) -> None:
    url, _ = serve(llama_server_routes())
    with open_served_model(url) as model:
        assert isinstance(model, Model)
        assert model.facts.kind == "llama-server"
        assert model.facts.context_length == 1024 and model.facts.slots == 1
        assert model.facts.version == "b(build number)-(build commit hash)"
        assert model.info.sha256 is None and model.info.backend == "http:llama-server"
        assert str(model.info.served["identity"]).startswith("served:")
        assert model.capabilities == {"generate", "teacher-forced"}
        assert model.batch_size == 1  # total_slots
        # the base model: every adapter explicitly at scale 0 (the server applies them by default)
        assert model.facts.lora == ((0, 0.0), (1, 0.0))
        assert model.decoding["concurrency"] == 1  # slots change temperature-0 results
        # ... and the report says so, beside the weaker cache key
        cache_key, slots = model.info.caveats
        assert "weaker than a file hash" in cache_key
        assert "1 in flight on 1 slot)" in slots and "--concurrency" in slots


def test_llama_server_name_can_pick_a_lora_adapter(serve: Any) -> None:
    url, _ = serve(llama_server_routes())
    with open_served_model(url + "#my_adapter_2") as model:
        assert model.facts.lora == ((0, 0.0), (1, 1.0))
        assert model.info.served["identity"] != open_served_model(url).info.served["identity"]
    with open_served_model(url + "#Meta-Llama-3.1-8B-Instruct-Q4_K_M") as model:
        assert model.facts.lora == ((0, 0.0), (1, 0.0))


def test_vllm_is_detected_and_lora_models_are_picked_by_name(serve: Any) -> None:
    url, _ = serve(
        {
            ("GET", "/version"): fixed(body("vllm_version.json")),
            ("GET", "/v1/models"): fixed(body("vllm_v1_models.json")),
        }
    )
    with pytest.raises(ServerError, match=r"serves 2 models .*pick one with URL#name"):
        open_served_model(url + "/v1")
    with open_served_model(url + "/v1#simonsca-lora") as model:
        assert model.facts.kind == "vllm" and model.facts.model == "simonsca-lora"
        assert model.facts.context_length == 1024 and model.facts.version == "0.10.2"
        assert model.batch_size == 4


def ollama_routes() -> dict[tuple[str, str], Route]:
    return {
        ("GET", "/api/version"): fixed(body("ollama_version.json")),
        ("GET", "/api/tags"): fixed(body("ollama_tags.json")),
        ("POST", "/api/show"): fixed(body("ollama_show.json")),
        ("POST", "/api/generate"): fixed(body("ollama_generate.json")),
    }


def test_ollama_generates_raw_greedy_with_its_context_set(serve: Any) -> None:
    url, fake = serve(ollama_routes())
    with open_served_model(url + "#llama3") as model:  # ":latest" may be left out
        assert model.facts.kind == "ollama" and model.facts.model == "llama3:latest"
        assert model.facts.digest == body("ollama_tags.json")["models"][1]["digest"]
        assert model.facts.context_length == 4096  # min(trained 8192, 4096) when not given
        assert model.capabilities == {"generate"}
        [(index, done)] = list(model.complete_many([GenerationRequest("def f(", 64)]))
    assert index == 0 and done.finish_reason == "stop" and done.n_tokens == 63
    assert done.text.startswith("\n  if a == 0:")
    [sent] = fake.bodies("/api/generate")
    assert sent["raw"] is True and sent["stream"] is False
    greedy = {"temperature": 0.0, "top_k": 1, "seed": 0, "num_ctx": 4096}
    assert greedy.items() <= sent["options"].items()
    assert sent["options"]["num_predict"] == 64 and sent["options"]["stop"] == ["\n\n"]


def test_lmstudio_picks_a_model_and_reads_the_completion(serve: Any) -> None:
    url, fake = serve(
        {
            ("GET", "/api/v0/models"): fixed(body("lmstudio_v0_models.json")),
            ("POST", "/api/v0/completions"): fixed(body("lmstudio_v0_completions.json")),
        }
    )
    with pytest.raises(ServerError) as info:
        open_served_model(url + "#granite")
    message = str(info.value)
    assert "'granite' is not served" in message and "meta-llama-3.1-8b-instruct" in message
    assert "text-embedding" not in message  # embedding models are not offered
    with open_served_model(url + "#meta-llama-3.1-8b-instruct") as model:
        assert model.facts.kind == "lmstudio" and model.facts.context_length == 131072
        completion = model.complete("the meaning of life is", max_tokens=10)
    assert completion.text == " to find your purpose, and once you have"
    assert completion.finish_reason == "length" and completion.n_tokens == 9
    assert fake.bodies("/api/v0/completions")[0]["temperature"] == 0.0


def test_lmstudio_answer_that_filled_the_loaded_context_is_an_error_not_a_result(
    serve: Any,
) -> None:
    full = body("lmstudio_v0_completions.json")
    full["usage"] = {"prompt_tokens": 4090, "completion_tokens": 6, "total_tokens": 4096}
    url, _ = serve(
        {
            ("GET", "/api/v0/models"): fixed(body("lmstudio_v0_models.json")),
            ("POST", "/api/v0/completions"): fixed(full),
        }
    )
    with (
        open_served_model(url + "#meta-llama-3.1-8b-instruct") as model,
        pytest.raises(ContextTooSmall, match="loaded context of 4096"),
    ):
        model.complete("x", max_tokens=10)


def llama_cpp_python_routes(
    extra: dict[tuple[str, str], Route] | None = None,
) -> dict[tuple[str, str], Route]:
    return {
        ("GET", "/openapi.json"): fixed(
            {"info": {"title": "🦙 llama.cpp Python API", "version": "0.3.36"}}
        ),
        ("GET", "/v1/models"): fixed(body("llama_cpp_python_v1_models.json")),
        ("POST", "/extras/tokenize"): lambda b: (200, {"tokens": toy_tokens(b["input"], True)}),
        ("POST", "/v1/completions"): lambda b: (
            (400, body("llama_cpp_python_context_error.json"))
            if len(b["prompt"]) > 1000
            else (
                200,
                {
                    "choices": [{"text": "1,0", "finish_reason": "stop"}],
                    "usage": {"completion_tokens": 3},
                },
            )
        ),
        **(extra or {}),
    }


def test_llama_cpp_python_context_is_probed_from_its_refusal(serve: Any) -> None:
    url, fake = serve(llama_cpp_python_routes())
    with open_served_model(url + "#gemma-3-270m-q4_k_m") as model:
        assert model.facts.kind == "llama-cpp-python" and model.facts.context_length == 1024
        assert model.facts.version == "0.3.36"
        assert model.count_tokens("1,0,1") == 5  # the server's count less its BOS
        # too long: refused before any completion request is made
        before = len(fake.bodies("/v1/completions"))
        with pytest.raises(ContextTooSmall) as info:
            model.complete("0" * 1000, max_tokens=100)
        assert len(fake.bodies("/v1/completions")) == before
        assert "1001 tokens" in str(info.value) and "served context of 1024" in str(info.value)
        assert "\n" not in str(info.value)
        model.complete("SimonsCA1", max_tokens=8)
    reset, sent = fake.bodies("/v1/completions")[-2:]
    assert sent["temperature"] == 0.0 and sent["repeat_penalty"] == 1.0 and sent["seed"] == 0
    # each request follows a one-token reset, so the server's KV prefix reuse cannot carry
    # state from the previous prompt (it changes Gemma 3's greedy answers)
    assert reset["prompt"] == "\u2400" and reset["max_tokens"] == 1


def test_openai_generic_server_generates_but_refuses_teacher_forcing(serve: Any) -> None:
    url, fake = serve(
        {
            ("GET", "/v1/models"): fixed({"data": [{"id": "m"}]}),
            ("POST", "/v1/completions"): fixed(
                {
                    "choices": [{"text": "ok", "finish_reason": "length"}],
                    "usage": {"completion_tokens": 2},
                }
            ),
        }
    )
    with open_served_model(url, n_ctx=512) as model:
        assert model.facts.kind == "openai"
        assert model.complete("hi", max_tokens=2).finish_reason == "length"
        assert "top_k" not in fake.bodies("/v1/completions")[0]  # plain OpenAI has none
        assert len(model.info.caveats) == 1  # the cache key only: one request at a time
        with pytest.raises(ScoringUnsupported) as info:
            model.likelihood_many([LikelihoodRequest("a", "b")])
        assert "\n" not in str(info.value) and url in str(info.value)


@pytest.mark.parametrize("kind", ["ollama", "lmstudio"])
def test_generation_only_servers_refuse_teacher_forcing_in_one_line(serve: Any, kind: str) -> None:
    routes = (
        ollama_routes()
        if kind == "ollama"
        else {("GET", "/api/v0/models"): fixed(body("lmstudio_v0_models.json"))}
    )
    url, _ = serve(routes)
    name = "#llama3" if kind == "ollama" else "#meta-llama-3.1-8b-instruct"
    with open_served_model(url + name) as model:
        assert "teacher-forced" not in model.capabilities
        with pytest.raises(ScoringUnsupported) as info:
            model.likelihood_many([LikelihoodRequest("p", "a")])
    assert str(info.value).count("\n") == 0 and kind in str(info.value)


def test_ollama_over_long_prompt_is_refused_before_it_is_cut_silently(serve: Any) -> None:
    url, fake = serve(ollama_routes())
    with (
        open_served_model(url + "#llama3", n_ctx=64) as model,
        pytest.raises(ContextTooSmall, match="at most; UTF-8 bytes, no tokenizer"),
    ):
        model.complete("x" * 60, max_tokens=10)
    assert fake.bodies("/api/generate") == []


# --- teacher forcing --------------------------------------------------------------------------


def vllm_completion(b: dict[str, Any]) -> Reply:
    """prompt_logprobs in the documented shape, from the toy model."""
    tokens = b["prompt"]
    rows: list[Any] = [None]
    for position in range(1, len(tokens)):
        token = tokens[position]
        top_token = 1000 + ord("7")  # the toy model always prefers "7"
        lp = toy_logprob(position, token)
        row = {str(top_token): {"logprob": -0.1, "rank": 1, "decoded_token": "7"}}
        if b["prompt_logprobs"] >= 2:  # the runner-up ("8"): it tells a choice from a tie
            row[str(top_token + 1)] = {"logprob": -0.5, "rank": 2, "decoded_token": "8"}
        row[str(token)] = {
            "logprob": -0.1 if token == top_token else lp,
            "rank": 1 if token == top_token else 5,
            "decoded_token": chr(token - 1000) if token > 1000 else "",
        }
        rows.append(row)
    reply = body("vllm_completions_prompt_logprobs.json")
    reply["choices"][0]["prompt_logprobs"] = rows
    return 200, reply


def test_vllm_prompt_logprobs_give_the_answer_tokens_log_probs(serve: Any) -> None:
    # the recorded body itself parses: position 0 is null, each row maps ids to logprob/rank
    recorded = body("vllm_completions_prompt_logprobs.json")["choices"][0]["prompt_logprobs"]
    assert recorded[0] is None and recorded[1]["791"]["rank"] == 4
    url, fake = serve(
        {
            ("GET", "/version"): fixed(body("vllm_version.json")),
            ("GET", "/v1/models"): fixed(body("vllm_v1_models.json")),
            ("POST", "/tokenize"): lambda b: (
                200,
                {"tokens": toy_tokens(b["prompt"], b["add_special_tokens"]), "count": 0},
            ),
            ("POST", "/v1/completions"): vllm_completion,
        }
    )
    with open_served_model(url + "#google/gemma-3-270m") as model:
        [(index, got)] = list(model.likelihood_many([LikelihoodRequest("P:", "7a", stop="\n\n")]))
    assert index == 0 and got.token_ends == (1, 2) and got.boundary == "joint"
    assert got.logprobs == (-0.1, pytest.approx(-2.0 - 0.01 * 4))
    assert got.greedy == (True, False) and not got.stop_greedy
    assert got.margins == (pytest.approx(-0.5 + 0.1), pytest.approx(-0.1 - (-2.0 - 0.01 * 4)))
    assert got.stop_logprob == pytest.approx(2 * -2.0 - 0.01 * (5 + 6))
    [sent] = fake.bodies("/v1/completions")
    assert sent["prompt"] == toy_tokens("P:7a\n\n", True) and sent["prompt_logprobs"] == 2


def llama_server_completion(b: dict[str, Any]) -> Reply:
    """/completion in the documented shape: the token forced by logit_bias, with its raw
    log-prob and the raw top-1 (the toy model prefers "7"); unforced, it ends (eos)."""
    reply = body("llama_server_completion_probs.json")
    prefix = b["prompt"]
    if "logit_bias" not in b:
        reply.update(content="", stop_type="eos", completion_probabilities=[])
        return 200, reply
    [[token, bias]] = b["logit_bias"]
    # the prompt is decoded afresh, then each request reuses the slot's cache for the prefix
    first = prefix == toy_tokens("P:", True)
    assert bias > 100 and b["id_slot"] == 0 and b["cache_prompt"] is not first
    top = 1000 + ord("7")
    lp = -0.1 if token == top else toy_logprob(len(prefix), token)
    reply["completion_probabilities"] = [
        {
            "id": token,
            "logprob": lp,
            "token": chr(token - 1000),
            "bytes": [],
            "top_logprobs": [
                {"id": top, "logprob": -0.1, "token": "7", "bytes": [55]},
                {"id": top + 1, "logprob": -0.5, "token": "8", "bytes": [56]},
            ][: b["n_probs"]],
        }
    ]
    return 200, reply


def test_llama_server_forces_one_token_per_request_on_a_pinned_slot(serve: Any) -> None:
    url, fake = serve(
        {
            **llama_server_routes(),
            ("POST", "/tokenize"): toy_tokenize_with_pieces,
            ("POST", "/completion"): llama_server_completion,
        }
    )
    with open_served_model(url + "#my_adapter_1") as model:
        [(index, got)] = list(model.likelihood_many([LikelihoodRequest("P:", "7é", stop="\n\n")]))
    assert index == 0 and got.logprobs == (-0.1, pytest.approx(-2.0 - 0.01 * 4))
    assert got.greedy == (True, False)
    assert got.margins == (pytest.approx(-0.5 + 0.1), pytest.approx(-0.1 - (-2.0 - 0.01 * 4)))
    assert got.token_ends == (1, 3)  # "é" is two bytes
    assert got.stop_greedy  # greedy decoding ends the generation right after the answer
    sent = fake.bodies("/completion")
    assert len(sent) == 4 + 1  # one per forced token, and one unforced at the stop
    assert all(s["lora"] == [{"id": 0, "scale": 1.0}, {"id": 1, "scale": 0.0}] for s in sent)
    assert sent[0]["prompt"] == toy_tokens("P:", True) and sent[0]["n_predict"] == 1


def test_llama_server_chat_mode_renders_the_template_on_the_server(serve: Any) -> None:
    url, fake = serve(
        {
            **llama_server_routes(),
            ("POST", "/apply-template"): lambda b: (
                200,
                {"prompt": f"<|user|>{b['messages'][0]['content']}<|assistant|>"},
            ),
        }
    )
    with open_served_model(url) as model:
        assert model.chat_prompt("hello") == "<|user|>hello<|assistant|>"
        assert model.info.chat_template_source == "server"
    with open_served_model(url, chat_template="gemma") as model:
        assert model.chat_prompt("hello").startswith("<start_of_turn>user\nhello")
    assert len(fake.bodies("/apply-template")) == 1


def toy_tokenize_with_pieces(b: dict[str, Any]) -> Reply:
    ids = toy_tokens(b["content"], b["add_special"])
    return 200, {"tokens": [{"id": i, "piece": "" if i == BOS else chr(i - 1000)} for i in ids]}


def test_llama_server_generates_from_token_ids_greedily_without_prompt_cache(serve: Any) -> None:
    url, fake = serve(
        {
            **llama_server_routes(),
            ("POST", "/tokenize"): toy_tokenize_with_pieces,
            ("POST", "/completion"): fixed(body("llama_server_completion_probs.json")),
        }
    )
    with open_served_model(url + "#my_adapter_2") as model:
        done = model.complete("P:", max_tokens=7)
    assert done.text == "<the generated completion text>"
    assert done.finish_reason == "length" and done.n_tokens == 1  # stop_type "limit"
    [sent] = fake.bodies("/completion")
    assert sent["prompt"] == toy_tokens("P:", True) and sent["n_predict"] == 7
    assert sent["cache_prompt"] is False  # a reused cache moves temperature-0 results
    assert sent["temperature"] == 0.0 and sent["samplers"] == ["top_k", "temperature"]
    assert sent["lora"] == [{"id": 0, "scale": 0.0}, {"id": 1, "scale": 1.0}]


def test_llama_server_without_a_template_chats_on_its_chat_endpoint(serve: Any) -> None:
    props = body("llama_server_props.json")
    del props["chat_template"]
    chat = {"choices": [{"message": {"content": "1"}, "finish_reason": "stop"}], "usage": {}}
    url, fake = serve(
        {
            **llama_server_routes(),
            ("GET", "/props"): fixed(props),
            ("POST", "/tokenize"): toy_tokenize_with_pieces,
            ("POST", "/v1/chat/completions"): fixed(chat),
        }
    )
    with open_served_model(url + "#my_adapter_1") as model:
        prompt = model.chat_prompt("hi")
        assert prompt == SERVER_CHAT_PREFIX + "hi"
        assert model.complete(prompt, max_tokens=3).text == "1"
    [sent] = fake.bodies("/v1/chat/completions")
    assert sent["lora"] == [{"id": 0, "scale": 1.0}, {"id": 1, "scale": 0.0}]


def real_llama_server_routes() -> dict[tuple[str, str], Route]:
    """Bodies recorded from the real llama-server (llama-cpp-python 0.3.36's llama.cpp) serving
    Gemma 3 270M, which has no chat template, with one LoRA adapter, on two slots."""
    return {
        ("GET", "/props"): fixed(body("llama_server_real_props.json")),
        ("GET", "/v1/models"): fixed(body("llama_server_real_v1_models.json")),
        ("GET", "/lora-adapters"): fixed(body("llama_server_real_lora_adapters.json")),
        ("POST", "/tokenize"): toy_tokenize_with_pieces,
    }


def test_real_llama_server_bodies_give_slots_context_and_adapter(serve: Any) -> None:
    url, _ = serve(real_llama_server_routes())
    with open_served_model(url + "#gemma-3-270m-q4_k_m") as model:
        assert model.facts.kind == "llama-server" and model.facts.version == "b1-0c1e570"
        assert model.facts.slots == 2 and model.facts.context_length == 1024  # per slot
        assert model.facts.lora == ((0, 0.0),)
    with open_served_model(url + "#adapter") as model:
        assert model.facts.lora == ((0, 1.0),)


def test_llama_servers_builtin_chatml_is_not_taken_for_the_models_template(serve: Any) -> None:
    """A GGUF without a chat template shows llama-server's built-in ChatML in /props: chat mode
    refuses it in one line, as the in-process backend does, unless a fallback is named."""
    url, fake = serve(real_llama_server_routes())
    with open_served_model(url) as model:
        assert model.facts.chat_template is None and model.info.chat_template_source is None
        with pytest.raises(ConfigError, match="no chat template.*--chat-template") as info:
            model.chat_prompt("hello")
        assert "\n" not in str(info.value)
    with open_served_model(url, chat_template="gemma") as model:
        assert model.chat_prompt("hello").startswith("<start_of_turn>user\nhello")
    assert fake.bodies("/apply-template") == []


def test_real_llama_server_context_refusal_is_one_line(serve: Any) -> None:
    url, _ = serve(
        {
            **real_llama_server_routes(),
            ("POST", "/completion"): fixed(body("llama_server_real_context_error.json"), 400),
        }
    )
    with open_served_model(url) as model:
        object.__setattr__(model.facts, "context_length", None)  # skip the client's own check
        with pytest.raises(ContextTooSmall, match="exceeds the available context size") as info:
            model.complete("P:", max_tokens=4)
    assert "\n" not in str(info.value)


def test_llama_server_underflowed_probability_is_floored(serve: Any) -> None:
    """llama-server writes log(0) as the lowest float32 (-3.4e38), not null."""
    forced = body("llama_server_real_completion_forced.json")

    def completion(b: dict[str, Any]) -> Reply:
        reply = json.loads(json.dumps(forced))
        if "logit_bias" not in b:
            reply["stop_type"] = "eos"
            return 200, reply
        [[token, _]] = b["logit_bias"]
        entry = reply["completion_probabilities"][0]
        entry["id"] = token
        entry["logprob"] = -3.4028234663852886e38
        return 200, reply

    url, _ = serve({**real_llama_server_routes(), ("POST", "/completion"): completion})
    with open_served_model(url) as model:
        [(_, got)] = list(model.likelihood_many([LikelihoodRequest("P:", "7", stop="")]))
    assert got.logprobs == (-1.0e4,) and got.margins[0] == pytest.approx(1.0e4 - 1.707, abs=0.01)


def test_chat_mode_without_a_renderer_goes_to_the_chat_endpoint(serve: Any) -> None:
    url, fake = serve(
        llama_cpp_python_routes(
            {
                ("POST", "/v1/chat/completions"): fixed(
                    {
                        "choices": [{"message": {"content": "1,1"}, "finish_reason": "stop"}],
                        "usage": {"completion_tokens": 3},
                    }
                )
            }
        )
    )
    with open_served_model(url) as model:
        prompt = model.chat_prompt("SimonsCA1 ...")
        assert prompt == SERVER_CHAT_PREFIX + "SimonsCA1 ..."
        assert model.complete(prompt, max_tokens=5).text == "1,1"
        with pytest.raises(ScoringUnsupported, match="--chat-template"):
            list(model.likelihood_many([LikelihoodRequest(prompt, "1,1")]))
    [sent] = fake.bodies("/v1/chat/completions")
    assert sent["messages"] == [{"role": "user", "content": "SimonsCA1 ..."}]


# --- faults -----------------------------------------------------------------------------------


def test_a_server_that_is_down_is_one_clear_line() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(ServerError) as info:
        open_served_model(url)
    message = str(info.value)
    assert message.startswith(f"no server answers at {url}") and "\n" not in message


def test_a_url_that_is_not_a_model_server_is_one_clear_line(serve: Any) -> None:
    url, _ = serve({})
    with pytest.raises(ServerError, match="no server simonsca knows"):
        open_served_model(url + "/somewhere")


def test_unavailable_and_rate_limited_answers_are_retried_with_backoff(
    serve: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import simonsca.models.served.client as http_module

    slept: list[float] = []
    monkeypatch.setattr(http_module.time, "sleep", slept.append)
    answers = iter(
        [
            (503, {"error": {"message": "Loading model"}}),
            (429, {"error": "slow down"}, {"retry-after": "0"}),
        ]
    )
    ok = {"choices": [{"text": "fine", "finish_reason": "stop"}], "usage": {"completion_tokens": 1}}
    url, fake = serve(
        {
            ("GET", "/v1/models"): fixed({"data": [{"id": "m"}]}),
            ("POST", "/v1/completions"): lambda _: next(answers, (200, ok)),
        }
    )
    with open_served_model(url) as model:
        assert model.complete("x", max_tokens=1).text == "fine"
    assert len(fake.bodies("/v1/completions")) == 3
    assert [s for s in slept if s] == [0.5, 1.0]  # exponential backoff (0: the fake server)


def test_a_server_error_is_raised_not_returned(serve: Any) -> None:
    url, _ = serve(
        {
            ("GET", "/v1/models"): fixed({"data": [{"id": "m"}]}),
            ("POST", "/v1/completions"): fixed({"error": {"message": "boom"}}, status=500),
        }
    )
    with open_served_model(url) as model, pytest.raises(SimonscaError) as info:
        list(model.complete_many([GenerationRequest("a", 1), GenerationRequest("b", 1)]))
    assert "HTTP 500: boom" in str(info.value)


def test_concurrency_bounds_the_requests_in_flight(serve: Any) -> None:
    ok = {"choices": [{"text": "t", "finish_reason": "stop"}], "usage": {"completion_tokens": 1}}
    url, fake = serve(
        {
            ("GET", "/v1/models"): fixed({"data": [{"id": "m"}]}),
            ("POST", "/v1/completions"): fixed(ok),
        }
    )
    requests = [GenerationRequest(str(i), 1) for i in range(12)]
    with open_served_model(url, concurrency=3) as model:
        fake.delay = 0.05
        fake.max_in_flight = 0
        got = dict(model.complete_many(requests))
    assert sorted(got) == list(range(12))
    assert fake.max_in_flight == 3


# --- early stop on served answers ---------------------------------------------------------


def second_line_watch(text: str) -> str | None:
    """A watch that stops every answer at the end of its second line."""
    return "stop: two lines" if text.count("\n") >= 2 else None


def test_an_answer_that_arrives_whole_is_cut_where_the_in_process_watch_stops(
    serve: Any,
) -> None:
    """Ollama answers whole: the text is cut at the first line end where the watch fires, as
    the in-process backend would have stopped generating there."""
    url, _ = serve(ollama_routes())
    whole = body("ollama_generate.json")["response"]
    with open_served_model(url + "#llama3") as model:
        request = GenerationRequest("def f(", 64, watch=second_line_watch)
        [(_, done)] = list(model.complete_many([request]))
    assert done.text == "\n  if a == 0:\n" == whole[: whole.index("\n", 1) + 1]
    assert done.finish_reason == "cut"
    assert done.n_tokens == len(done.text.encode())  # no tokenizer: UTF-8 bytes bound it


def llama_server_stream(text: str, stop_type: str = "eos") -> Stream:
    """llama-server's streamed /completion: one event per character (the toy tokenizer), then
    the last event with ``stop`` and how it stopped."""
    events: list[Any] = [{"content": c, "stop": False} for c in text]
    events.append({"content": "", "stop": True, "stop_type": stop_type, "tokens_predicted": 99})
    return Stream(events)


def test_a_streamed_answer_is_closed_where_the_watch_fires(serve: Any) -> None:
    answer = "1,0\n0,1\n" + "1,1\n" * 40  # a runaway grid: 42 lines
    stream = llama_server_stream(answer)
    url, fake = serve(
        {
            **llama_server_routes(),
            ("POST", "/tokenize"): toy_tokenize_with_pieces,
            ("POST", "/completion"): lambda b: (200, stream),
        }
    )
    with open_served_model(url) as model:
        request = GenerationRequest("P:", 200, watch=second_line_watch)
        [(_, done)] = list(model.complete_many([request]))
        assert done.text == "1,0\n0,1\n" and done.finish_reason == "cut"
        assert done.n_tokens == len(done.text)  # the server's tokenizer: one per character
        [sent] = fake.bodies("/completion")
        assert sent["stream"] is True and sent["n_predict"] == 200
        # the client hung up at the cut: the server did not get to write the rest
        deadline = time.monotonic() + 5
        while not stream.hung_up and time.monotonic() < deadline:
            time.sleep(0.05)
        assert stream.hung_up and stream.sent < len(stream.events)
        # without a watch (early stop off) the answer is asked for whole, not streamed
        whole = {"content": answer, "stop": True, "stop_type": "limit", "tokens_predicted": 123}
        fake.routes[("POST", "/completion")] = fixed(whole)
        done = model.complete("P:", max_tokens=200)
        assert (done.text, done.finish_reason, done.n_tokens) == (answer, "length", 123)
        assert fake.bodies("/completion")[-1]["stream"] is False


def test_a_streamed_answer_the_watch_never_stops_ends_as_the_server_says(serve: Any) -> None:
    url, _ = serve(
        {
            **llama_server_routes(),
            ("POST", "/tokenize"): toy_tokenize_with_pieces,
            ("POST", "/completion"): lambda b: (200, llama_server_stream("1,0\n0", "limit")),
        }
    )
    with open_served_model(url) as model:
        request = GenerationRequest("P:", 5, watch=second_line_watch)
        [(_, done)] = list(model.complete_many([request]))
    assert (done.text, done.finish_reason, done.n_tokens) == ("1,0\n0", "length", 99)


def test_a_stream_that_is_not_json_is_one_line(serve: Any) -> None:
    url, _ = serve(
        {
            **llama_server_routes(),
            ("POST", "/tokenize"): toy_tokenize_with_pieces,
            ("POST", "/completion"): lambda b: (200, Stream(["{not json"])),
        }
    )
    with open_served_model(url) as model:
        request = GenerationRequest("P:", 5, watch=second_line_watch)
        with pytest.raises(ServerError, match="streamed something that is not JSON"):
            list(model.complete_many([request]))
