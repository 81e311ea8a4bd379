"""The one module that touches llama-cpp-python: GGUF models (and LoRA adapters) run by llama.cpp.

Everything simonsca asks of llama.cpp goes through here -- the runner, the forensics (KL / top-1)
and the training-data doctor alike -- so that loading, adapters, tokenization and the grouping of
tokens into decode calls are the same wherever a number comes from. It speaks llama.cpp's C API
(through llama-cpp-python's ctypes bindings) directly rather than the high-level ``Llama`` class:

* several items decode as separate sequences in one ``llama_decode`` (``n_seq_max``), for batched
  greedy generation and teacher-forced scoring;
* logits are computed only at the positions that need them (the ``logits`` flag per token): the
  last prompt token and the answer positions -- never an all-position logits buffer;
* an adapter llama.cpp rejects is an :class:`~simonsca.errors.AdapterMismatch` with llama.cpp's
  reason (``Llama(lora_path=...)`` in llama-cpp-python 0.3.36 silently leaves it out);
* llama.cpp's log goes to a buffer, quoted in errors, instead of the user's terminal.

Greedy decoding is an argmax over the logits (the lowest token id wins a tie). Files are checked
by :mod:`simonsca.gguf_file` before llama.cpp sees them.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import re
import signal
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

import numpy as np

from simonsca.errors import AdapterMismatch, ConfigError, ContextTooSmall, ModelFileError
from simonsca.gguf_file import GGUFFile, adapter_fit_problem, file_sha256, open_gguf
from simonsca.models.base import (
    AnswerLikelihood,
    CompletesOne,
    Completion,
    GenerationRequest,
    LikelihoodRequest,
    ModelInfo,
    is_top_choice,
    max_tokens_for,
    watch_cut,
)
from simonsca.tasks import Item

# Named chat templates for GGUFs that carry none (Gemma 3 270M base has none). Each renders one
# user message followed by the assistant cue; the BOS token is left to the tokenizer.
FALLBACK_CHAT_TEMPLATES: dict[str, str] = {
    "gemma": "<start_of_turn>user\n{message}<end_of_turn>\n<start_of_turn>model\n",
    "llama3": (
        "<|start_header_id|>user<|end_header_id|>\n\n{message}<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n"
    ),
    "chatml": "<|im_start|>user\n{message}<|im_end|>\n<|im_start|>assistant\n",
}


def check_chat_template(name: str | None) -> None:
    """:class:`ConfigError` unless ``name`` is None or one of :data:`FALLBACK_CHAT_TEMPLATES`
    (every backend checks the name the same way)."""
    if name is not None and name not in FALLBACK_CHAT_TEMPLATES:
        raise ConfigError(
            f"unknown chat template {name!r}; pass --chat-template "
            + "|".join(FALLBACK_CHAT_TEMPLATES)
        )


#: Tokens per llama.cpp micro-batch. Each output row is a vocabulary-sized logits row, and
#: llama.cpp reserves room for a whole micro-batch of them (Gemma 3's 262k vocabulary: 256 rows
#: are 256 MiB). Teacher forcing decodes this many tokens at a time (measured on Gemma 3 270M,
#: 2 CPU cores: 256 scores about 1.3x the items/s of 64).
UBATCH = 256
#: Logits rows requested per decode call when teacher forcing.
MAX_OUTPUTS = UBATCH
#: Prompt tokens per decode call before greedy generation. Kept at 64, the grouping every
#: earlier simonsca answer was generated with: how tokens are grouped moves the logits in their
#: last bits, and with them near-tied greedy choices.
PREFILL_CHUNK = 64
#: Seconds a GGUF chat template may take to render one prompt (in the main thread).
TEMPLATE_SECONDS = 2.0
#: ``range`` steps a chat template may take to render one prompt, in any thread (a real
#: template takes a few per message; a runaway nested loop is stopped after about 0.5 s).
TEMPLATE_RANGE_STEPS = 1_000_000


# ---------------------------------------------------------------------------------------------
# llama.cpp's log: kept in a buffer, quoted in errors


class _LlamaLog:
    """Receives llama.cpp's log lines (instead of stderr); the last few are kept for errors."""

    def __init__(self) -> None:
        self.lines: deque[str] = deque(maxlen=400)
        self._partial = ""
        self._callback: Any = None
        self._llama_cpp: Any = None

    def install(self, llama_cpp: Any) -> None:
        """Point llama.cpp's log at this buffer. Done again before every call that may log:
        llama-cpp-python points it at stderr whenever its ``_logger`` module is (re)imported."""
        if self._callback is None:

            @llama_cpp.llama_log_callback
            def callback(level: int, text: bytes, user_data: ctypes.c_void_p) -> None:
                self._partial += text.decode("utf-8", errors="replace")
                *done, self._partial = self._partial.split("\n")
                self.lines.extend(line for line in done if line.strip())

            self._callback = callback  # keep a reference: llama.cpp holds only the pointer
        self._llama_cpp = llama_cpp
        llama_cpp.llama_log_set(self._callback, ctypes.c_void_p(0))

    @contextlib.contextmanager
    def capture(self) -> Iterator[list[str]]:
        """Yields a list that holds the lines logged inside the block once it ends."""
        if self._llama_cpp is not None:
            self._llama_cpp.llama_log_set(self._callback, ctypes.c_void_p(0))
        self.lines.clear()
        self._partial = ""
        box: list[str] = []
        try:
            yield box
        finally:
            box.extend(self.lines)
            if self._partial.strip():
                box.append(self._partial)


_LOG = _LlamaLog()


def _bindings() -> Any:
    """llama-cpp-python's ctypes bindings, imported on first use, with the log redirected."""
    try:
        import llama_cpp
    except ImportError as error:  # pragma: no cover - a dependency
        raise ModelFileError(
            f"llama-cpp-python cannot be imported ({error}); reinstall it (see the README)"
        ) from None
    _LOG.install(llama_cpp)
    return llama_cpp


def _reason(lines: Sequence[str], default: str) -> str:
    """The most telling line of llama.cpp's log: its cause, not its summary.

    llama.cpp logs the cause first ("llama_model_load: error loading model: unknown model
    architecture: 'zzyzx'") and a summary last ("...: failed to load model"), so the last line
    that says "error" wins over the last that says "failed", and that over the last line. The
    function names and the "error loading model" prefix are dropped."""
    errors = [line for line in lines if "error" in line.lower()]
    failures = [line for line in lines if "failed" in line.lower()]
    pick = (errors or failures or list(lines) or [default])[-1].strip()
    pick = _FUNCTION_PREFIX.sub("", pick)
    pick = re.sub(r"^error (?:loading model|loading model hyperparameters)?:\s*", "", pick)
    return pick[:300] or default


#: "llama_model_load: " / "llama_model_load_from_file_impl: " at the start of a log line.
_FUNCTION_PREFIX = re.compile(r"^(?:[A-Za-z_][A-Za-z0-9_]*: )+")


def gpu_offload_supported() -> bool:
    """Whether this llama.cpp build can offload layers to a GPU (CUDA, Metal, Vulkan, ...)."""
    return bool(_bindings().llama_supports_gpu_offload())


def default_gpu_layers() -> int:
    """All layers (-1) where the build can offload to a GPU, otherwise none (0)."""
    return -1 if gpu_offload_supported() else 0


# ---------------------------------------------------------------------------------------------
# Chat templates


class _TemplateTimeout(Exception):
    pass


@contextlib.contextmanager
def _time_limit(seconds: float) -> Iterator[None]:
    """Interrupt the block after ``seconds`` (SIGALRM; only in the main thread on POSIX)."""
    usable = hasattr(signal, "setitimer") and threading.current_thread() is threading.main_thread()
    if not usable:
        yield
        return

    def on_alarm(signum: int, frame: Any) -> None:
        raise _TemplateTimeout

    previous = signal.signal(signal.SIGALRM, on_alarm)
    started = time.monotonic()
    # An alarm someone else set (pytest-timeout, a caller's own limit) is put back afterwards
    # with the time it has left; one due sooner than ours keeps its own time.
    outer, interval = signal.setitimer(signal.ITIMER_REAL, seconds)
    if outer and outer < seconds:
        signal.setitimer(signal.ITIMER_REAL, outer)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, signal.SIG_DFL if previous is None else previous)
        if outer:
            left = outer - (time.monotonic() - started)
            signal.setitimer(signal.ITIMER_REAL, max(left, 1e-3), interval)


class _CountedRange(Sequence[int]):
    """The sandbox's ``range`` whose iteration spends one shared budget of steps: the limit on a
    template's loops that needs no signal, so it holds outside the main thread too."""

    def __init__(self, steps: list[int], values: range) -> None:
        self._steps = steps
        self._values = values

    def __len__(self) -> int:
        return len(self._values)

    def __getitem__(self, index: Any) -> Any:
        return self._values[index]

    def __iter__(self) -> Iterator[int]:
        for value in self._values:
            self._steps[0] -= 1
            if self._steps[0] < 0:
                raise _TemplateTimeout
            yield value


def _counted_range(steps: list[int]) -> Callable[..., _CountedRange]:
    from jinja2.sandbox import safe_range

    def bounded(*args: int) -> _CountedRange:
        return _CountedRange(steps, safe_range(*args))

    return bounded


class ChatTemplate:
    """A GGUF's Jinja chat template, compiled on first use in a sandbox with a time limit (main
    thread) and a budget of loop steps (any thread).

    A template that does not compile, or refuses or overruns on a prompt, is a
    :class:`~simonsca.errors.ConfigError` naming the model file -- raised only when a chat prompt
    is asked for, so a broken template never stops a raw-mode run.
    """

    def __init__(self, source: str, *, path: Path, bos: str, eos: str) -> None:
        self.source = source
        self.path = path
        self.bos = bos
        self.eos = eos
        self._compiled: Any = None

    def _fail(self, why: str) -> ConfigError:
        # One line whatever the template or Jinja says (--chat-template does not help here: it
        # is only the fallback for a GGUF without a template of its own).
        why = " ".join(why.split())
        if len(why) > 300:
            why = why[:297] + "..."
        return ConfigError(
            f"chat template of {self.path} (tokenizer.chat_template) {why}; run with "
            "--prompt-mode raw, or fix the template in the GGUF"
        )

    def _template(self) -> Any:
        if self._compiled is None:
            import jinja2
            import jinja2.ext
            from jinja2.sandbox import ImmutableSandboxedEnvironment

            env = ImmutableSandboxedEnvironment(
                loader=jinja2.BaseLoader(),
                trim_blocks=True,
                lstrip_blocks=True,
                extensions=[jinja2.ext.loopcontrols],
            )
            try:
                with _time_limit(TEMPLATE_SECONDS):
                    self._compiled = env.from_string(self.source)
            except _TemplateTimeout:
                raise self._fail(f"took longer than {TEMPLATE_SECONDS:g} s to compile") from None
            except jinja2.TemplateError as error:
                message = str(error).splitlines()[0] if str(error) else type(error).__name__
                raise self._fail(f"is malformed ({message})") from None
            except (RecursionError, MemoryError, ValueError, OverflowError) as error:
                raise self._fail(f"is malformed ({type(error).__name__}: {error})") from None
        return self._compiled

    def render(self, message: str) -> str:
        import jinja2

        template = self._template()

        def raise_exception(text: str) -> None:
            raise self._fail(f"refused the prompt: {text}")

        steps = [TEMPLATE_RANGE_STEPS]
        try:
            with _time_limit(TEMPLATE_SECONDS):
                text = str(
                    template.render(
                        messages=[{"role": "user", "content": message}],
                        add_generation_prompt=True,
                        bos_token=self.bos,
                        eos_token=self.eos,
                        raise_exception=raise_exception,
                        range=_counted_range(steps),
                    )
                )
        except _TemplateTimeout:
            if steps[0] < 0:
                raise self._fail(
                    f"took more than {TEMPLATE_RANGE_STEPS:,} loop steps to render"
                ) from None
            raise self._fail(f"took longer than {TEMPLATE_SECONDS:g} s to render") from None
        except jinja2.TemplateError as error:
            message = str(error).splitlines()[0] if str(error) else type(error).__name__
            raise self._fail(f"cannot be rendered ({message})") from None
        except (RecursionError, MemoryError, TypeError, ValueError, OverflowError) as error:
            raise self._fail(f"cannot be rendered ({type(error).__name__}: {error})") from None
        return text


# ---------------------------------------------------------------------------------------------
# The model


@dataclass
class _Sequence:
    """One request being decoded: its tokens so far and where its text stands."""

    index: int
    seq_id: int
    tokens: list[int]
    n_prompt: int
    text: bytearray
    max_tokens: int
    request: GenerationRequest
    n_generated: int = 0


class LlamaCppModel(CompletesOne):
    """A GGUF model (optionally with a LoRA adapter GGUF) run by llama.cpp in this process.

    ``n_ctx`` is the context of *each* sequence; ``n_seq`` how many sequences decode together
    (batched generation and scoring; results can differ from one-at-a-time decoding in the last
    bits of the logits, so ``n_seq`` is part of :attr:`decoding`). ``n_gpu_layers=None`` offloads
    every layer when the llama.cpp build supports a GPU, none otherwise. ``chat_template`` names a
    fallback template (``gemma``, ``llama3``, ``chatml``) used in chat mode only when the GGUF
    carries none of its own. ``vocab_only`` loads the tokenizer alone (no weights, no context).
    """

    capabilities = frozenset({"generate", "teacher-forced"})

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
        self._lc = lc = _bindings()
        self.n_gpu_layers = default_gpu_layers() if n_gpu_layers is None else int(n_gpu_layers)
        self._stack = contextlib.ExitStack()

        params = lc.llama_model_default_params()
        params.n_gpu_layers = self.n_gpu_layers
        params.vocab_only = vocab_only
        with _LOG.capture() as log:
            model = lc.llama_model_load_from_file(str(self.path).encode("utf-8"), params)
        if not model:
            raise ModelFileError(
                f"model file {self.path} could not be loaded by llama.cpp: "
                f"{_reason(log, 'llama.cpp refused it')}"
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
        self.name = self.path.stem + (f"+{self.lora_path.stem}" if self.lora_path else "")
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
        lc = self._lc
        if self.n_ctx < 16:
            raise ConfigError(f"n_ctx must be >= 16 tokens, got {self.n_ctx}")
        params = lc.llama_context_default_params()
        params.n_ctx = self.n_ctx * self.n_seq
        params.n_batch = max(UBATCH, 512)
        params.n_ubatch = UBATCH
        params.n_seq_max = self.n_seq
        params.kv_unified = False  # independent sequences: each attends to its own cells only
        params.n_threads = self.n_threads
        params.n_threads_batch = self.n_threads
        params.no_perf = True
        # As llama-cpp-python's Llama does: flash attention off (llama.cpp's "auto" turns it on
        # for some backends, which moves the logits and with them near-tied greedy choices).
        params.flash_attn_type = lc.LLAMA_FLASH_ATTN_TYPE_DISABLED
        with _LOG.capture() as log:
            ctx = lc.llama_init_from_model(self._model, params)
        if not ctx:
            self.close()
            raise ModelFileError(
                f"llama.cpp could not make a context of {self.n_ctx} x {self.n_seq} tokens for "
                f"{self.path}: {_reason(log, 'out of memory?')}; try a smaller --n-ctx"
            )
        self._ctx = ctx
        self._stack.callback(lc.llama_free, ctx)
        self._n_batch = int(lc.llama_n_batch(ctx))
        batch = lc.llama_batch_init(self._n_batch, 0, 1)
        self._batch = batch
        self._stack.callback(lc.llama_batch_free, batch)
        self._memory = lc.llama_get_memory(ctx)

    def _apply_adapter(self, lora_path: Path) -> None:
        lc = self._lc
        with _LOG.capture() as log:
            adapter = lc.llama_adapter_lora_init(self._model, str(lora_path).encode("utf-8"))
        if not adapter:  # a NULL pointer
            self.close()
            raise AdapterMismatch(
                f"adapter {lora_path} does not fit base model {self.path}: "
                f"{_reason(log, 'llama.cpp rejected it')}"
            )
        self._stack.callback(lc.llama_adapter_lora_free, adapter)
        self._adapters = (lc.llama_adapter_lora_p_ctypes * 1)(adapter)
        self._adapter_scales = (ctypes.c_float * 1)(1.0)
        with _LOG.capture() as log:
            rc = lc.llama_set_adapters_lora(self._ctx, self._adapters, 1, self._adapter_scales)
        if rc != 0:
            self.close()
            raise AdapterMismatch(
                f"adapter {lora_path} could not be applied to base model {self.path}: "
                f"{_reason(log, f'llama_set_adapters_lora returned {rc}')}"
            )

    @contextlib.contextmanager
    def extra_adapter(self, lora_path: Path) -> Iterator[None]:
        """Apply one more LoRA adapter (scale 1) for the block, on top of the model's own, then
        set the model back as it was: for the noise floor's null update, without a reload."""
        lc = self._lc
        self._require_context()
        with _LOG.capture() as log:
            adapter = lc.llama_adapter_lora_init(self._model, str(lora_path).encode("utf-8"))
        if not adapter:
            raise AdapterMismatch(
                f"adapter {lora_path} does not fit model {self.path}: "
                f"{_reason(log, 'llama.cpp rejected it')}"
            )
        own = list(self._adapters) if self.lora_path is not None else []
        both = (lc.llama_adapter_lora_p_ctypes * (len(own) + 1))(*own, adapter)
        scales = (ctypes.c_float * (len(own) + 1))(*([1.0] * (len(own) + 1)))
        try:
            with _LOG.capture() as log:
                rc = lc.llama_set_adapters_lora(self._ctx, both, len(own) + 1, scales)
            if rc != 0:
                raise AdapterMismatch(
                    f"adapter {lora_path} could not be applied to {self.path}: "
                    f"{_reason(log, f'llama_set_adapters_lora returned {rc}')}"
                )
            yield
        finally:
            with _LOG.capture():
                if own:
                    lc.llama_set_adapters_lora(self._ctx, self._adapters, 1, self._adapter_scales)
                else:
                    lc.llama_set_adapters_lora(self._ctx, None, 0, None)
                lc.llama_adapter_lora_free(adapter)

    # -- what the runner needs -----------------------------------------------------------------

    @property
    def decoding(self) -> Mapping[str, object]:
        """Settings that change outputs (part of the runner's cache key)."""
        return {
            "backend": "llama-cpp-python",
            "version": getattr(self._lc, "__version__", None),
            "decoder": "simonsca-greedy-argmax/2",
            "n_ctx": self.n_ctx,
            "n_seq": self.n_seq,
            "n_ubatch": UBATCH,  # how tokens are grouped changes the logits slightly
            "prefill_chunk": PREFILL_CHUNK,
            "flash_attn": False,
            "gpu": self.n_gpu_layers != 0,
        }

    @property
    def batch_size(self) -> int:
        """How many requests are decoded together (the runner groups items by this)."""
        return self.n_seq

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
            return FALLBACK_CHAT_TEMPLATES[self._fallback].format(message=message)
        raise ConfigError(
            f"model {self.path} has no chat template; pass --chat-template "
            + "|".join(FALLBACK_CHAT_TEMPLATES)
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

    # -- decoding ------------------------------------------------------------------------------

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
        self._lc.llama_memory_clear(self._memory, True)

    def _decode(self, entries: Sequence[tuple[int, int, int, bool]]) -> list[np.ndarray]:
        """One ``llama_decode`` of (token, position, seq_id, wants_logits) entries; returns the
        logits rows of the flagged entries, in order (copies: the next decode reuses the
        buffer)."""
        lc = self._lc
        batch = self._batch
        batch.n_tokens = len(entries)
        n_out = 0
        for j, (token, pos, seq, wants) in enumerate(entries):
            batch.token[j] = token
            batch.pos[j] = pos
            batch.n_seq_id[j] = 1
            batch.seq_id[j][0] = seq
            batch.logits[j] = 1 if wants else 0
            n_out += wants
        with _LOG.capture() as log:
            rc = lc.llama_decode(self._ctx, batch)
        if rc != 0:
            raise RuntimeError(
                f"llama_decode returned {rc} with {self.name}: {_reason(log, 'no reason given')}"
            )
        if not n_out:
            return []
        flat = np.ctypeslib.as_array(lc.llama_get_logits(self._ctx), shape=(n_out * self.n_vocab,))
        return list(np.array(flat, dtype=np.float32).reshape(n_out, self.n_vocab))

    def _feed(
        self, pending: list[tuple[int, int, int, bool]], *, chunk: int | None = None
    ) -> list[np.ndarray]:
        """Decode ``pending`` in calls of at most ``chunk`` (default n_batch) tokens and
        MAX_OUTPUTS logits rows."""
        rows: list[np.ndarray] = []
        limit = min(chunk or self._n_batch, self._n_batch)
        start = 0
        while start < len(pending):
            end, outputs = start, 0
            while end < len(pending) and end - start < limit:
                if pending[end][3]:
                    if outputs == MAX_OUTPUTS:
                        break
                    outputs += 1
                end += 1
            rows.extend(self._decode(pending[start:end]))
            start = end
        return rows

    def complete_many(
        self, requests: Sequence[GenerationRequest]
    ) -> Iterator[tuple[int, Completion]]:
        """Greedy completions, ``n_seq`` requests decoded together; yields ``(index, completion)``
        as each finishes (so the caller can keep it at once)."""
        self._require_context()
        for start in range(0, len(requests), self.n_seq):
            group = requests[start : start + self.n_seq]
            yield from self._complete_group(start, group)

    def _complete_group(
        self, offset: int, group: Sequence[GenerationRequest]
    ) -> Iterator[tuple[int, Completion]]:
        seqs: list[_Sequence] = []
        for k, request in enumerate(group):
            tokens = self.tokenize(request.prompt, bos=True)
            self.check_fits(len(tokens) + request.max_tokens, "the prompt plus max_tokens")
            seqs.append(
                _Sequence(
                    offset + k, k, tokens, len(tokens), bytearray(), request.max_tokens, request
                )
            )
        self._clear()
        try:
            pending = [
                (token, pos, s.seq_id, pos == s.n_prompt - 1)
                for s in seqs
                for pos, token in enumerate(s.tokens)
            ]
            rows = self._feed(pending, chunk=PREFILL_CHUNK)
            active = seqs
            while active:
                still: list[_Sequence] = []
                step: list[tuple[int, int, int, bool]] = []
                for s, row in zip(active, rows):
                    token = int(np.argmax(row))
                    finished = self._advance(s, token)
                    if finished is not None:
                        yield s.index, finished
                        continue
                    still.append(s)
                    step.append((token, len(s.tokens) - 1, s.seq_id, True))
                active = still
                rows = self._decode(step) if step else []
        finally:
            self._clear()

    def _advance(self, s: _Sequence, token: int) -> Completion | None:
        """Append the chosen token; the finished completion when the sequence stops here."""
        request = s.request
        if self.is_end_of_generation(token):
            return self._finish(s, "stop", len(s.text))
        s.tokens.append(token)
        s.n_generated += 1
        piece = self.piece(token)
        s.text += piece
        text = s.text.decode("utf-8", errors="ignore")
        for stop in request.stop:
            at = text.find(stop)
            if at >= 0:
                return self._finish(s, "stop", len(text[:at].encode("utf-8")))
        if request.watch is not None and b"\n" in piece:
            # The watch reads whole lines: the answer is cut at the first new line end where it
            # fires (a token may carry text past it), as a served answer is (early_stop).
            before = bytes(s.text[: len(s.text) - len(piece)]).decode("utf-8", errors="ignore")
            cut = watch_cut(text, request.watch, len(before))
            if cut is not None:
                return self._finish(s, "cut", len(text[: cut[0]].encode("utf-8")))
        if s.n_generated >= s.max_tokens:
            return self._finish(s, "length", len(s.text))
        return None

    @staticmethod
    def _finish(s: _Sequence, reason: str, n_bytes: int) -> Completion:
        text = bytes(s.text[:n_bytes]).decode("utf-8", errors="replace")
        return Completion(text=text, n_tokens=s.n_generated, finish_reason=reason)  # type: ignore[arg-type]

    # -- teacher forcing -----------------------------------------------------------------------

    def answer_tokens(self, prompt: str, answer: str) -> tuple[list[int], list[int], str]:
        """Prompt and answer tokens as generation would meet them, and how the boundary was cut.

        The prompt is tokenized alone (with BOS), as it is for generation. The answer is the rest
        of the tokenization of prompt + answer when that starts with the prompt's own tokens
        (``"joint"``: the tokens a model trained on the whole text learned to produce); otherwise
        (a token straddles the boundary) the answer is tokenized alone (``"separate"``).
        """
        prompt_tokens = self.tokenize(prompt, bos=True)
        joint = self.tokenize(prompt + answer, bos=True)
        if joint[: len(prompt_tokens)] == prompt_tokens:
            return prompt_tokens, joint[len(prompt_tokens) :], "joint"
        return prompt_tokens, self.tokenize(answer, special=False), "separate"

    def likelihood(self, prompt: str, answer: str, *, stop: str = "\n\n") -> AnswerLikelihood:
        """Teacher-forced log-probabilities of ``answer`` (then ``stop``) after ``prompt``."""
        request = LikelihoodRequest(prompt=prompt, answer=answer, stop=stop)
        return next(iter(self.likelihood_many([request])))[1]

    def likelihood_many(
        self,
        requests: Sequence[LikelihoodRequest],
        *,
        n_seq: int | None = None,
        stepwise: bool = False,
    ) -> Iterator[tuple[int, AnswerLikelihood]]:
        """Teacher-forced scores, ``n_seq`` sequences per group (default 1: on 2 CPU cores one
        sequence of 256-token decode calls at a time measured faster than groups of 4);
        logits only at the answer and stop positions. Yields ``(index, likelihood)``.

        ``stepwise`` decodes the answer one token per call, as greedy generation does, instead
        of :data:`UBATCH` tokens per call: scoring the same answers both ways measures the
        numerical noise between the two modes (how far the logits move when the same tokens are
        grouped differently into decode calls)."""
        self._require_context()
        group_size = 1 if stepwise else min(self.n_seq, n_seq or 1)
        for start in range(0, len(requests), group_size):
            group = requests[start : start + group_size]
            for k, (rows, tokens, meta) in enumerate(self._force_group(group, stepwise=stepwise)):
                yield start + k, self._summarise(rows, tokens, meta)

    def answer_log_softmax(self, prompt: str, answer: str) -> np.ndarray:
        """Full log-softmax rows (answer tokens x vocabulary) predicting each answer token; for
        the forensics' KL divergence between two models."""
        self._require_context()
        [(rows, _, _)] = self._force_group([LikelihoodRequest(prompt, answer, stop="")])
        return np.stack([_log_softmax(r) for r in rows]) if rows else np.zeros((0, self.n_vocab))

    def _force_group(
        self, group: Sequence[LikelihoodRequest], *, stepwise: bool = False
    ) -> list[tuple[list[np.ndarray], list[int], dict[str, Any]]]:
        plans = []
        for seq, request in enumerate(group):
            prompt_tokens, answer_tokens, boundary = self.answer_tokens(
                request.prompt, request.answer + request.stop
            )
            n_answer = len(answer_tokens)
            if request.stop:
                body = self.answer_tokens(request.prompt, request.answer)[1]
                n_answer = len(body)
                if answer_tokens[: len(body)] != body:
                    # The stop merged into the answer's last token (an answer ending in a line
                    # break): score the answer's own tokens, then the stop's.
                    answer_tokens = body + self.tokenize(request.stop, special=False)
            tokens = prompt_tokens + answer_tokens
            self.check_fits(len(tokens), "the prompt plus the expected answer")
            first = len(prompt_tokens) - 1  # the logits here predict answer_tokens[0]
            plans.append((seq, tokens, first, answer_tokens, n_answer, boundary))
        pending = [
            (token, pos, seq, first <= pos < len(tokens) - 1)
            for seq, tokens, first, _, _, _ in plans
            for pos, token in enumerate(tokens)
            if pos < len(tokens) - 1 or pos == 0
        ]
        self._clear()
        try:
            if stepwise:  # as greedy generation decodes: the prompt in chunks, then one by one
                prompt_end = max(first for _, _, first, _, _, _ in plans) + 1
                rows = self._feed(pending[:prompt_end], chunk=PREFILL_CHUNK)
                for entry in pending[prompt_end:]:
                    rows.extend(self._decode([entry]))
            else:
                rows = self._feed(pending)
        finally:
            self._clear()
        out = []
        at = 0
        for _, _, _, answer_tokens, n_answer, boundary in plans:
            n = len(answer_tokens)
            out.append(
                (rows[at : at + n], answer_tokens, {"n_answer": n_answer, "boundary": boundary})
            )
            at += n
        return out

    def _summarise(
        self, rows: list[np.ndarray], tokens: list[int], meta: dict[str, Any]
    ) -> AnswerLikelihood:
        n_answer = int(meta["n_answer"])
        logprobs: list[float] = []
        margins: list[float] = []
        eog_next = False
        for k, (row, token) in enumerate(zip(rows, tokens)):
            r = row.astype(np.float64)
            peak = r.max()
            logprobs.append(float(r[token] - (peak + np.log(np.exp(r - peak).sum()))))
            margins.append(_margin(r, token))
            if k == n_answer:
                top = int(np.argmax(r))
                eog_next = self.is_end_of_generation(top) and is_top_choice(_margin(r, top))
        # Greedy decoding stops after the answer if it writes the stop text, or ends the
        # generation there.
        stop_greedy = eog_next or all(is_top_choice(m) for m in margins[n_answer:])
        ends: list[int] = []
        position = 0
        for token in tokens[:n_answer]:
            position += len(self.piece(token))
            ends.append(position)
        return AnswerLikelihood(
            token_ends=tuple(ends),
            logprobs=tuple(logprobs[:n_answer]),
            margins=tuple(margins[:n_answer]),
            stop_logprob=float(sum(logprobs[n_answer:])),
            stop_greedy=stop_greedy,
            boundary=str(meta["boundary"]),
        )

    # -- lifetime ------------------------------------------------------------------------------

    def close(self) -> None:
        """Free llama.cpp's model, context and adapter; also done when garbage-collected."""
        if not self.__dict__.get("_closed", True):
            self._closed = True
            with _LOG.capture():
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


def _margin(row: np.ndarray, token: int) -> float:
    """The best other token's logit minus ``token``'s (see :func:`is_top_choice`): the
    log-softmax shifts every entry alike, so logits give the log-prob difference."""
    before, after = row[:token], row[token + 1 :]  # views: no copy of a 262k-entry row
    rivals = [float(part.max()) for part in (before, after) if part.size]
    return max(rivals) - float(row[token]) if rivals else 0.0


def _log_softmax(row: np.ndarray) -> np.ndarray:
    r = row.astype(np.float64)
    peak = r.max()
    return r - peak - np.log(np.exp(r - peak).sum())


def _check_adapter_fits(model: GGUFFile, adapter: GGUFFile) -> None:
    """:class:`AdapterMismatch` before loading anything when the adapter's header says it was made
    for another architecture or tensors the model lacks (or of other shapes)."""
    problem = adapter_fit_problem(model, adapter)
    if problem is not None:
        raise AdapterMismatch(
            f"adapter {adapter.path} does not fit base model {model.path}: {problem}"
        )


def load_tokenizer(path: str | os.PathLike[str]) -> LlamaCppModel:
    """The model's tokenizer alone (no weights): for counting tokens in training data."""
    return LlamaCppModel(path, vocab_only=True)


__all__ = [
    "FALLBACK_CHAT_TEMPLATES",
    "ChatTemplate",
    "LlamaCppModel",
    "default_gpu_layers",
    "gpu_offload_supported",
    "load_tokenizer",
]
