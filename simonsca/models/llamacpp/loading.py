"""Loading a GGUF into llama.cpp: the model, its context, its LoRA adapter (applied at load,
swapped on the loaded model, or one more for a block), its tokenizer and chat prompt, and freeing
it all again."""

from __future__ import annotations

import contextlib
import ctypes
import os
from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, Self

from simonsca.errors import AdapterMismatch, ConfigError, ContextTooSmall, ModelFileError
from simonsca.gguf_file import GGUFFile, adapter_fit_problem, file_sha256, open_gguf
from simonsca.models.base import CompletesOne, ModelInfo, max_tokens_for
from simonsca.models.chat_template import (
    FALLBACK_CHOICES,
    ChatTemplate,
    check_chat_template,
    render_fallback,
)
from simonsca.models.llamacpp.native import LOG, bindings, default_gpu_layers, reason
from simonsca.tasks import Item

#: Tokens per llama.cpp micro-batch. Each output row is a vocabulary-sized logits row, and
#: llama.cpp reserves room for a whole micro-batch of them (Gemma 3's 262k vocabulary: 256 rows
#: are 256 MiB). Teacher forcing decodes this many tokens at a time (measured on Gemma 3 270M,
#: 2 CPU cores: 256 scores about 1.3x the items/s of 64).
UBATCH = 256


class LoadedModel(CompletesOne):
    """A GGUF loaded by llama.cpp, with its context and adapter: what decoding builds on (see
    :class:`~simonsca.models.llamacpp.LlamaCppModel` for the parameters)."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        lora_path: str | os.PathLike[str] | None = None,
        n_ctx: int = 2048,
        n_threads: int | None = None,
        n_gpu_layers: int | None = None,
        n_seq: int = 1,
        seed: int = 0,
        chat_template: str | None = None,
        vocab_only: bool = False,
    ) -> None:
        check_chat_template(chat_template)
        if n_seq < 1:
            raise ConfigError(f"n_seq must be >= 1, got {n_seq}")
        self._closed = True
        self._adapter: Any = None  # llama.cpp's adapter now applied (owned here), or None
        self._extra_active = False  # inside extra_adapter: the adapters may not be swapped
        header = open_gguf(path, "model")
        if header.is_adapter:
            raise ModelFileError(
                f"model file {path} is a LoRA adapter, not a model; pass it with --lora"
            )
        self.path = Path(path)
        self.lora_path = Path(lora_path) if lora_path is not None else None
        adapter_header = open_gguf(self.lora_path, "adapter") if self.lora_path else None
        if adapter_header is not None:
            _check_adapter_fits(header, adapter_header)
        self.header = header
        self.n_ctx = int(n_ctx)
        self.n_seq = int(n_seq)
        self.seed = seed
        self.vocab_only = vocab_only
        self.n_threads = int(n_threads or os.cpu_count() or 1)
        self._lc = lc = bindings()
        self.n_gpu_layers = default_gpu_layers() if n_gpu_layers is None else int(n_gpu_layers)
        self._stack = contextlib.ExitStack()

        params = lc.llama_model_default_params()
        params.n_gpu_layers = self.n_gpu_layers
        params.vocab_only = vocab_only
        with LOG.capture() as log:
            model = lc.llama_model_load_from_file(str(self.path).encode("utf-8"), params)
        if not model:
            raise ModelFileError(
                f"model file {self.path} could not be loaded by llama.cpp: "
                f"{reason(log, 'llama.cpp refused it')}"
            )
        self._model = model
        self._stack.callback(lc.llama_model_free, model)
        self._closed = False
        self._vocab = lc.llama_model_get_vocab(model)
        self.n_vocab = int(lc.llama_vocab_n_tokens(self._vocab))
        self._token_buffer = (lc.llama_token * 4096)()
        self._piece_buffer = ctypes.create_string_buffer(256)
        self.n_ctx_train = int(lc.llama_model_n_ctx_train(model))
        if not vocab_only:
            self._make_context()
            if self.lora_path is not None:
                self._apply_adapter(self.lora_path)

        self._gguf_template = header.chat_template
        self._fallback = chat_template
        self.name = _model_name(self.path, self.lora_path)
        source: str | None
        if self._gguf_template:
            source = "gguf"
        elif chat_template:
            source = f"fallback:{chat_template}"
        else:
            source = None
        self.info = ModelInfo(
            name=self.name,
            path=str(self.path),
            sha256=file_sha256(self.path),
            adapter_path=str(self.lora_path) if self.lora_path else None,
            adapter_sha256=file_sha256(self.lora_path) if self.lora_path else None,
            chat_template_source=source,
            context_length=self.n_ctx_train or header.context_length,
            backend="llama-cpp-python",
        )

    # -- loading -------------------------------------------------------------------------------

    def _make_context(self) -> None:
        if self.n_ctx < 16:
            raise ConfigError(f"n_ctx must be >= 16 tokens, got {self.n_ctx}")
        try:
            ctx = self._new_context(self.n_ctx, self.n_seq)
        except ModelFileError:
            self.close()
            raise
        self._stack.callback(self._lc.llama_free, ctx)
        self._use_context(ctx)
        self._stack.callback(self._lc.llama_batch_free, self._batch)

    def _use_context(self, ctx: Any) -> None:
        lc = self._lc
        self._ctx = ctx
        self._n_batch = int(lc.llama_n_batch(ctx))
        self._batch = lc.llama_batch_init(self._n_batch, 0, 1)
        self._memory = lc.llama_get_memory(ctx)

    def _new_context(self, n_ctx: int, n_seq: int) -> Any:
        """A llama.cpp context of ``n_seq`` independent sequences of ``n_ctx`` tokens each."""
        lc = self._lc
        params = lc.llama_context_default_params()
        params.n_ctx = n_ctx * n_seq
        params.n_batch = max(UBATCH, 512)
        params.n_ubatch = UBATCH
        params.n_seq_max = n_seq
        params.kv_unified = False  # independent sequences: each attends to its own cells only
        params.n_threads = self.n_threads
        params.n_threads_batch = self.n_threads
        params.no_perf = True
        # As llama-cpp-python's Llama does: flash attention off (llama.cpp's "auto" turns it on
        # for some backends, which moves the logits and with them near-tied greedy choices).
        params.flash_attn_type = lc.LLAMA_FLASH_ATTN_TYPE_DISABLED
        with LOG.capture() as log:
            ctx = lc.llama_init_from_model(self._model, params)
        if not ctx:
            raise ModelFileError(
                f"llama.cpp could not make a context of {n_ctx} x {n_seq} tokens for "
                f"{self.path}: {reason(log, 'out of memory?')}; try a smaller --n-ctx"
            )
        return ctx

    @contextlib.contextmanager
    def sequences(self, n_seq: int, n_ctx: int) -> Iterator[None]:
        """Decode in a context of ``n_seq`` sequences of ``n_ctx`` tokens each for the block
        (the same weights and adapters), then in the model's own again; nothing when the model's
        own context already holds that many. For the noise floor's regrouping null: several
        answers decoded one token each per call, as ``n_seq`` greedy generations are."""
        self._require_context()
        if self._extra_active:
            raise RuntimeError(f"model {self.name}: sequences inside extra_adapter")
        if n_seq <= self.n_seq and n_ctx <= self.n_ctx:
            yield
            return
        lc = self._lc
        own = (self._ctx, self._n_batch, self._batch, self._memory, self.n_seq, self.n_ctx)
        ctx = self._new_context(max(16, n_ctx), n_seq)
        try:
            self._use_context(ctx)
            self.n_seq, self.n_ctx = n_seq, max(16, n_ctx)
            try:
                adapters = self._own_adapters()
                if adapters:
                    rc, log = self._set_adapters(adapters)
                    if rc != 0:
                        raise AdapterMismatch(
                            f"adapter {self.lora_path} could not be applied to {self.path}: "
                            f"{reason(log, f'llama_set_adapters_lora returned {rc}')}"
                        )
                yield
            finally:
                lc.llama_batch_free(self._batch)
        finally:
            self._ctx, self._n_batch, self._batch, self._memory, self.n_seq, self.n_ctx = own
            lc.llama_free(ctx)

    # -- adapters ------------------------------------------------------------------------------

    def _init_adapter(self, lora_path: Path, target: str) -> Any:
        """llama.cpp's adapter read from ``lora_path`` for this model (not applied yet)."""
        with LOG.capture() as log:
            adapter = self._lc.llama_adapter_lora_init(self._model, str(lora_path).encode("utf-8"))
        if not adapter:  # a NULL pointer
            raise AdapterMismatch(
                f"adapter {lora_path} does not fit {target} {self.path}: "
                f"{reason(log, 'llama.cpp rejected it')}"
            )
        return adapter

    def _set_adapters(self, adapters: Sequence[Any]) -> tuple[int, list[str]]:
        """Apply exactly ``adapters`` (scale 1 each; none: the bare model) to the context;
        llama.cpp's return code and log."""
        lc = self._lc
        n = len(adapters)
        chosen = (lc.llama_adapter_lora_p_ctypes * n)(*adapters) if n else None
        scales = (ctypes.c_float * n)(*([1.0] * n)) if n else None
        with LOG.capture() as log:
            rc = lc.llama_set_adapters_lora(self._ctx, chosen, n, scales)
        return int(rc), log

    def _own_adapters(self) -> list[Any]:
        return [self._adapter] if self._adapter is not None else []

    def _free_adapter(self, adapter: Any) -> None:
        with LOG.capture():
            self._lc.llama_adapter_lora_free(adapter)

    def _apply_adapter(self, lora_path: Path) -> None:
        try:
            self._adapter = self._init_adapter(lora_path, "base model")
        except AdapterMismatch:
            self.close()
            raise
        rc, log = self._set_adapters(self._own_adapters())
        if rc != 0:
            self.close()
            raise AdapterMismatch(
                f"adapter {lora_path} could not be applied to base model {self.path}: "
                f"{reason(log, f'llama_set_adapters_lora returned {rc}')}"
            )

    def use_adapter(self, lora_path: str | os.PathLike[str] | None) -> None:
        """Apply ``lora_path`` instead of the model's adapter (None: no adapter), without
        reloading the base weights: a sweep of checkpoints on one base loads it once.

        The old adapter is freed, no decoding state is kept across the swap, and what
        identifies the model follows it (:attr:`lora_path`, :attr:`name`, and :attr:`info`, so
        the answer cache keys the new pair). An adapter that is missing, malformed or does not
        fit is one line (:class:`~simonsca.errors.ModelFileError`,
        :class:`~simonsca.errors.AdapterMismatch`) and leaves the model as it was."""
        self._require_context()
        if self._extra_active:
            raise RuntimeError(f"model {self.name}: use_adapter inside extra_adapter")
        new = Path(lora_path) if lora_path is not None else None
        adapter: Any = None
        sha256: str | None = None
        if new is not None:
            _check_adapter_fits(self.header, open_gguf(new, "adapter"))
            sha256 = file_sha256(new)
            adapter = self._init_adapter(new, "base model")
        rc, log = self._set_adapters([adapter] if adapter is not None else [])
        if rc != 0:
            back, _ = self._set_adapters(self._own_adapters())
            if adapter is not None:
                self._free_adapter(adapter)
            if back != 0:  # not even the old one: nothing defined is left to run
                self.close()
            raise AdapterMismatch(
                f"adapter {new} could not be applied to base model {self.path}: "
                f"{reason(log, f'llama_set_adapters_lora returned {rc}')}"
            )
        old, self._adapter = self._adapter, adapter
        if old is not None:
            self._free_adapter(old)
        self._clear()
        self.lora_path = new
        self.name = _model_name(self.path, new)
        self.info = replace(
            self.info,
            name=self.name,
            adapter_path=str(new) if new else None,
            adapter_sha256=sha256,
        )

    @contextlib.contextmanager
    def extra_adapter(self, lora_path: Path) -> Iterator[None]:
        """Apply one more LoRA adapter (scale 1) for the block, on top of the model's own, then
        set the model back as it was: for the noise floor's null update, without a reload."""
        self._require_context()
        adapter = self._init_adapter(lora_path, "model")
        self._extra_active = True
        try:
            rc, log = self._set_adapters([*self._own_adapters(), adapter])
            if rc != 0:
                raise AdapterMismatch(
                    f"adapter {lora_path} could not be applied to {self.path}: "
                    f"{reason(log, f'llama_set_adapters_lora returned {rc}')}"
                )
            yield
        finally:
            self._extra_active = False
            self._set_adapters(self._own_adapters())
            self._free_adapter(adapter)

    # -- tokens and prompts --------------------------------------------------------------------

    def tokenize(self, text: str, *, bos: bool = False, special: bool = True) -> list[int]:
        """Token ids of ``text``; with ``special``, control tokens such as ``<start_of_turn>``
        are parsed (as a chat template means them)."""
        return self.tokenize_bytes(text.encode("utf-8"), bos=bos, special=special)

    def tokenize_bytes(self, data: bytes, *, bos: bool = False, special: bool = False) -> list[int]:
        n = self.count_bytes(data, bos=bos, special=special)
        return list(self._token_buffer[:n])

    def count_bytes(self, data: bytes, *, bos: bool = False, special: bool = False) -> int:
        """How many tokens ``data`` is (the ids are left in a reused buffer: no list is built,
        which matters when counting every sample of a training file)."""
        lc = self._lc
        buffer = self._token_buffer
        n = lc.llama_tokenize(self._vocab, data, len(data), buffer, len(buffer), bos, special)
        if n < 0:
            self._token_buffer = buffer = (lc.llama_token * (-n + 64))()
            n = lc.llama_tokenize(self._vocab, data, len(data), buffer, len(buffer), bos, special)
        return int(n)

    def piece(self, token: int) -> bytes:
        """The bytes a token stands for (control tokens render as nothing)."""
        lc = self._lc
        n = lc.llama_token_to_piece(
            self._vocab, token, self._piece_buffer, len(self._piece_buffer), 0, False
        )
        if n < 0:
            self._piece_buffer = ctypes.create_string_buffer(-n)
            n = lc.llama_token_to_piece(
                self._vocab, token, self._piece_buffer, len(self._piece_buffer), 0, False
            )
        return self._piece_buffer.raw[:n]

    def is_end_of_generation(self, token: int) -> bool:
        return bool(self._lc.llama_vocab_is_eog(self._vocab, token))

    def is_control(self, token: int) -> bool:
        attr = self._lc.llama_vocab_get_attr(self._vocab, token)
        return bool(attr & self._lc.LLAMA_TOKEN_ATTR_CONTROL)

    def count_tokens(self, text: str) -> int:
        return len(self.tokenize(text))

    def max_tokens_for(self, answer: str) -> int:
        """Generation budget for an expected answer text (see :func:`max_tokens_for`)."""
        return max_tokens_for(self.count_tokens(answer))

    def chat_prompt(self, item_or_text: Item | str) -> str:
        """One user message in the model's chat template, followed by the assistant cue."""
        message = item_or_text.user_message if isinstance(item_or_text, Item) else item_or_text
        if self._gguf_template:
            text = self._chat_template().render(message)
            bos = self._special_text(self._lc.llama_vocab_bos(self._vocab))
            # The tokenizer adds BOS itself; a second one from the template confuses the model.
            if bos and self._lc.llama_vocab_get_add_bos(self._vocab) and text.startswith(bos):
                text = text[len(bos) :]
            return text
        if self._fallback:
            return render_fallback(self._fallback, message)
        raise ConfigError(
            f"model {self.path} has no chat template; pass --chat-template {FALLBACK_CHOICES}"
        )

    def _special_text(self, token: int) -> str:
        if token < 0:
            return ""
        raw = self._lc.llama_vocab_get_text(self._vocab, token)
        return raw.decode("utf-8", errors="replace") if raw else ""

    def _chat_template(self) -> ChatTemplate:
        template = self.__dict__.get("_compiled_template")
        if template is None:
            assert self._gguf_template is not None
            template = ChatTemplate(
                self._gguf_template,
                path=self.path,
                bos=self._special_text(self._lc.llama_vocab_bos(self._vocab)),
                eos=self._special_text(self._lc.llama_vocab_eos(self._vocab)),
            )
            self.__dict__["_compiled_template"] = template
        return template

    # -- the context ---------------------------------------------------------------------------

    def _require_context(self) -> None:
        if self._closed:
            raise RuntimeError(f"model {self.name} is closed")
        if self.vocab_only:
            raise RuntimeError(f"model {self.name} was loaded with vocab_only=True")

    def check_fits(self, n_tokens: int, what: str) -> None:
        """:class:`ContextTooSmall` when ``n_tokens`` do not fit one sequence's context."""
        if n_tokens > self.n_ctx:
            suggestion = 1 << (n_tokens - 1).bit_length()
            raise ContextTooSmall(
                f"model {self.name}: {what} needs {n_tokens} tokens > n_ctx {self.n_ctx}; "
                f"pass --n-ctx {suggestion} or more"
            )

    def _clear(self) -> None:
        """Forget every sequence's tokens (the KV cache): no request sees another's state."""
        self._lc.llama_memory_clear(self._memory, True)

    # -- lifetime ------------------------------------------------------------------------------

    def close(self) -> None:
        """Free llama.cpp's model, context and adapter; also done when garbage-collected."""
        if not self.__dict__.get("_closed", True):
            self._closed = True
            with LOG.capture():
                adapter, self._adapter = self._adapter, None
                if adapter is not None:
                    self._lc.llama_adapter_lora_free(adapter)
                self._stack.close()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):  # at interpreter exit modules may be gone
            self.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"LlamaCppModel({str(self.path)!r}, lora_path={self.lora_path!r}, n_ctx={self.n_ctx}, "
            f"n_seq={self.n_seq})"
        )


def _model_name(path: Path, lora_path: Path | None) -> str:
    return path.stem + (f"+{lora_path.stem}" if lora_path else "")


def _check_adapter_fits(model: GGUFFile, adapter: GGUFFile) -> None:
    """:class:`AdapterMismatch` before loading anything when the adapter's header says it was made
    for another architecture or tensors the model lacks (or of other shapes)."""
    problem = adapter_fit_problem(model, adapter)
    if problem is not None:
        raise AdapterMismatch(
            f"adapter {adapter.path} does not fit base model {model.path}: {problem}"
        )
