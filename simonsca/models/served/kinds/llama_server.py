"""llama.cpp's own ``llama-server``: what it reports at startup (``/props``, ``/v1/models``,
``/lora-adapters``) and how simonsca talks to it (token-id prompts, per-request LoRA, slots).

Checked against the real server (``tests/test_llama_server_real.py``, llama.cpp as vendored by
llama-cpp-python 0.3.36, Gemma 3 270M): llama.cpp's CPU logits depend on how tokens are grouped
into decode calls, so the server answers exactly as the in-process backend only when it groups
them alike -- ``-fa off --swa-full``, one request in flight. Flash attention on (the default) and
the sliding-window checkpoints a model like Gemma 3 gets without ``--swa-full`` (the last few
prompt tokens decoded apart) move log-probs by up to ~0.4 nats and flip near-tied greedy choices;
two requests in flight on two slots share decode calls and move them too (hence
``result_varies_with_concurrency``). ``--swa-full`` also lets teacher forcing decode one new token
per request instead of re-decoding a few (or, with ``--ctx-checkpoints 0``, the whole prefix).
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

from simonsca.errors import ConfigError, ContextTooSmall
from simonsca.models.base import (
    AnswerLikelihood,
    Completion,
    FinishReason,
    GenerationRequest,
    LikelihoodRequest,
)
from simonsca.models.chat_template import FALLBACK_CHOICES
from simonsca.models.served.client import HttpClient, ServerError
from simonsca.models.served.facts import ServerFacts, ServerKind
from simonsca.models.served.forcing import (
    LOGPROB_FLOOR,
    NO_RIVAL_SEEN,
    plan_forcing,
    summarise_forcing,
)
from simonsca.models.served.kinds.openai import LLAMA_CPP_GREEDY, Dialect, StreamPiece
from simonsca.models.served.names import openai_model_ids, pick_model, stem_aliases

#: A bias that makes the forced token the greedy choice (teacher forcing).
FORCE_BIAS = 1.0e4
#: What ``/props`` reports as ``chat_template`` when the GGUF has none: llama-server's built-in
#: ChatML (``CHATML_TEMPLATE_SRC`` in llama.cpp's ``common/chat.cpp``), not the model's own.
SERVER_DEFAULT_TEMPLATE = (
    "{%- for message in messages -%}\n"
    "  {{- '<|im_start|>' + message.role + '\n' + message.content + '<|im_end|>\n' -}}\n"
    "{%- endfor -%}\n"
    "{%- if add_generation_prompt -%}\n"
    "  {{- '<|im_start|>assistant\n' -}}\n"
    "{%- endif -%}"
)
#: ``details["chat_template"]`` of a model whose GGUF has no chat template.
NO_OWN_TEMPLATE = "none in the GGUF (llama-server would apply its built-in ChatML)"


def describe(
    http: HttpClient, props: dict[str, Any], name: str | None, *, n_ctx: int | None
) -> ServerFacts:
    """The model, or the LoRA adapter, that ``name`` picks, with the slots, context, template
    and adapters the server reports."""
    root = http.root
    ids = openai_model_ids(http)
    adapters = http.probe("/lora-adapters") or []
    aliases = stem_aliases(ids)
    model_path = str(props.get("model_path") or "")
    if model_path and ids:
        aliases.update({k: ids[0] for k in stem_aliases([model_path])})
    adapter_alias = stem_aliases([str(a.get("path", "")) for a in adapters])
    # The base model: every adapter explicitly at scale 0 (the server applies them all by
    # default); an adapter's name: that one at scale 1.
    lora: tuple[tuple[int, float], ...] = tuple((int(a["id"]), 0.0) for a in adapters)
    if name is not None and name not in aliases and name in adapter_alias:
        chosen = adapter_alias[name]
        lora = tuple((int(a["id"]), 1.0 if str(a.get("path")) == chosen else 0.0) for a in adapters)
        name = None
    elif name is not None and name not in aliases:
        everything = ids + [f"{a.get('path')} (LoRA)" for a in adapters]
        pick_model(root, everything, name, {})  # raises, listing models and adapters
    model = pick_model(root, ids, name, aliases)
    settings = props.get("default_generation_settings") or {}
    context = settings.get("n_ctx") or props.get("n_ctx")
    template = str(props.get("chat_template") or "") or None
    details: dict[str, object] = {"model_path": model_path}
    if template == SERVER_DEFAULT_TEMPLATE:
        # Not the model's template: chat mode must refuse, as the in-process backend does.
        template = None
        details["chat_template"] = NO_OWN_TEMPLATE
    return ServerFacts(
        kind="llama-server",
        root=root,
        model=model,
        context_length=int(context) if context else n_ctx,
        version=str(props.get("build_info") or "") or None,
        chat_template=template,
        slots=int(props.get("total_slots") or 1),
        adapters=tuple({"id": a.get("id"), "path": a.get("path")} for a in adapters),
        lora=lora,
        bos_text=str(props.get("bos_token") or "") or None,
        details=details,
    )


class LlamaServerDialect(Dialect):
    """llama.cpp's own ``llama-server``: token-id prompts, per-request LoRA, slots."""

    kind: ServerKind = "llama-server"
    result_varies_with_concurrency = True  # slots decode together; temperature-0 results move

    def __init__(self, http: HttpClient, facts: ServerFacts) -> None:
        super().__init__(http, facts)
        self._piece_bytes: dict[int, bytes] = {}

    @property
    def exact_tokens(self) -> bool:
        return True

    def _pieces(self, text: str, *, special: bool) -> list[tuple[int, bytes]]:
        """Token ids with their bytes (``with_pieces``; a piece that is not valid UTF-8 comes
        as a list of bytes). Every piece seen is kept for the answer's byte offsets."""
        body = {"content": text, "add_special": special, "parse_special": True, "with_pieces": True}
        out: list[tuple[int, bytes]] = []
        for token in self.http.json("POST", "/tokenize", body)["tokens"]:
            if not isinstance(token, dict):
                raise ServerError(f"{self.facts.root}/tokenize ignores with_pieces; update it")
            piece = token.get("piece", "")
            raw = bytes(piece) if isinstance(piece, list) else str(piece).encode("utf-8")
            out.append((int(token["id"]), raw))
            self._piece_bytes[int(token["id"])] = raw
        return out

    def tokenize(self, text: str, with_bos: bool) -> list[int]:
        return [t for t, _ in self._pieces(text, special=with_bos)]

    def count_tokens(self, text: str) -> int:
        return len(self._pieces(text, special=False))

    def prompt_tokens(self, prompt: str) -> int:
        return len(self._pieces(prompt, special=True))

    def sampling(self) -> dict[str, object]:
        # llama-server also has DRY, and a sampler chain of its own choosing unless named
        return {**LLAMA_CPP_GREEDY, "dry_multiplier": 0.0, "samplers": ["top_k", "temperature"]}

    def extra_body(self) -> dict[str, object]:
        if not self.facts.lora:
            return {}
        return {"lora": [{"id": i, "scale": s} for i, s in self.facts.lora]}

    def _body(self, prompt: object, n_predict: int, **extra: object) -> dict[str, object]:
        return {
            "model": self.facts.model,
            "prompt": prompt,
            "n_predict": n_predict,
            "stream": False,
            **self.sampling(),
            **self.extra_body(),
            **extra,
        }

    def _generation_body(self, prompt: str, request: GenerationRequest) -> dict[str, object]:
        tokens = self.tokenize(prompt, True)
        return self._body(
            tokens,
            request.max_tokens,
            stop=list(request.stop),
            cache_prompt=False,
            return_tokens=True,
        )

    def _finish(self, reply: dict[str, Any]) -> tuple[FinishReason, int]:
        """How a reply (or a stream's last event) ended, and the tokens generated."""
        if reply.get("truncated"):
            raise ContextTooSmall(
                f"{self.facts.root}: the prompt plus max_tokens overran the server's context"
            )
        reason: FinishReason = "length" if reply.get("stop_type") == "limit" else "stop"
        return reason, int(reply.get("tokens_predicted", len(reply.get("tokens") or [])))

    def complete(self, prompt: str, request: GenerationRequest) -> Completion:
        reply = self.http.json("POST", "/completion", self._generation_body(prompt, request))
        reason, n_tokens = self._finish(reply)
        return Completion(str(reply.get("content", "")), n_tokens, reason)

    #: Checked by tests/test_llama_server_real.py: the streamed answer equals the whole one.
    streams = True

    def stream(self, prompt: str, request: GenerationRequest) -> Generator[StreamPiece, None, None]:
        body = self._generation_body(prompt, request) | {"stream": True}
        for event in self.http.events("/completion", body):
            if not isinstance(event, dict):
                raise ServerError(f"{self.facts.root}/completion streamed {event!r}")
            yield (
                str(event.get("content") or ""),
                self._finish(event) if event.get("stop") else None,
            )

    @property
    def has_chat_template(self) -> bool:
        """False when the GGUF has no chat template (the server would apply ChatML instead)."""
        return self.facts.details.get("chat_template") != NO_OWN_TEMPLATE

    def render_chat(self, message: str) -> str | None:
        """The model's chat template applied by ``/apply-template`` (less its BOS text, which
        the tokenizer adds again); ``None`` when ``/props`` shows no template (the message then
        goes to the chat endpoint). A GGUF without a template of its own is refused in one line,
        as the in-process backend refuses it, rather than chatted with in ChatML."""
        if not self.has_chat_template:
            raise ConfigError(
                f"{self.facts.root}: the served model has no chat template (llama-server would "
                f"fall back to ChatML); pass --chat-template {FALLBACK_CHOICES}"
            )
        if not self.facts.chat_template:
            return None
        body = {"messages": [{"role": "user", "content": message}]}
        text = str(self.http.json("POST", "/apply-template", body)["prompt"])
        bos = self.facts.bos_text
        return text[len(bos) :] if bos and text.startswith(bos) else text

    def likelihood(self, request: LikelihoodRequest, slot: int) -> AnswerLikelihood:
        """One request per forced token on one pinned slot (its cache holds the prefix).

        The first request decodes the prompt afresh (``cache_prompt: false``): reusing a prefix
        some earlier request left in the slot moved the log-probs by up to 0.36 nats (measured
        with Gemma 3 270M), so the scores depended on what the server had served before."""
        plan = plan_forcing(self.tokenize, request)
        logprobs: list[float] = []
        margins: list[float] = []
        eog_next = False
        for k, token in enumerate(plan.forced):
            prefix = plan.prompt + plan.forced[:k]
            if k == plan.n_answer:  # would greedy decoding end the generation here?
                free = self._body(prefix, 1, cache_prompt=k > 0, id_slot=slot)
                eog_next = self.http.json("POST", "/completion", free).get("stop_type") == "eos"
            body = self._body(
                prefix,
                1,
                cache_prompt=k > 0,
                id_slot=slot,
                n_probs=2,  # the forced token and the best other one: a tie is not a choice
                logit_bias=[[token, FORCE_BIAS]],
            )
            reply = self.http.json("POST", "/completion", body)
            probs = reply.get("completion_probabilities") or reply.get("probs") or []
            if not probs:
                raise ServerError(f"{self.facts.root}/completion returned no n_probs output")
            entry = probs[0]
            if int(entry.get("id", token)) != token:
                raise ServerError(
                    f"{self.facts.root}: logit_bias did not force token {token}; "
                    "is a sampler other than top_k/temperature configured?"
                )
            logprob = entry.get("logprob")
            # a probability that underflowed to 0 comes as the lowest float32 (-3.4e38; older
            # servers sent null): the floor, so that one token cannot swamp a sum of log-probs
            value = max(float(logprob), LOGPROB_FLOOR) if logprob is not None else LOGPROB_FLOOR
            others = [
                max(float(e["logprob"]), LOGPROB_FLOOR)
                for e in entry.get("top_logprobs") or []
                if e.get("logprob") is not None and int(e.get("id", -1)) != token
            ]
            logprobs.append(value)
            margins.append(max(others) - value if others else NO_RIVAL_SEEN)
        # plan_forcing tokenized every forced token, so each one's piece is known
        pieces = [self._piece_bytes.get(t, b"") for t in plan.forced]
        return summarise_forcing(plan, logprobs, margins, pieces, eog_next)
