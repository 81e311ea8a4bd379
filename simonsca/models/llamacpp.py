"""GGUF models (and LoRA adapters) through llama-cpp-python, greedy and deterministic.

Files are checked here before llama.cpp sees them (missing, not GGUF, truncated), because
llama.cpp answers a bad file with a crash or a screen of log lines; every failure becomes one
line that names the file.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import io
import logging
import math
import mmap
import os
import struct
import sys
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, Self

import numpy as np

from simonsca.errors import AdapterMismatch, ConfigError, ContextTooSmall, ModelFileError
from simonsca.models.base import Completion, ModelInfo, max_tokens_for
from simonsca.tasks import Item

GGUF_MAGIC = b"GGUF"

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

# Tokens per llama_decode call when scoring (each answer position needs a vocab-sized logits
# row: 64 x 262144 floats = 64 MiB for Gemma 3).
_SCORE_CHUNK = 64


# ---------------------------------------------------------------------------------------------
# File checks and hashes


_sha256_cache: dict[tuple[str, int, int], str] = {}


def _stat_key(path: Path) -> tuple[str, int, int]:
    st = path.stat()
    return (str(path.resolve()), st.st_size, st.st_mtime_ns)


def file_sha256(path: str | os.PathLike[str]) -> str:
    """sha256 of a file, computed once per (path, size, mtime) in this process."""
    p = Path(path)
    key = _stat_key(p)
    digest = _sha256_cache.get(key)
    if digest is None:
        h = hashlib.sha256()
        with p.open("rb") as f:
            for block in iter(lambda: f.read(1 << 22), b""):
                h.update(block)
        digest = _sha256_cache[key] = h.hexdigest()
    return digest


def remember_sha256(path: str | os.PathLike[str], digest: str) -> None:
    """Record a digest already verified elsewhere (e.g. against a package's expected hash)."""
    _sha256_cache[_stat_key(Path(path))] = digest


_U64 = struct.Struct("<Q")


class _Truncated(Exception):
    pass


class _HeaderReader:
    """Walks a GGUF header in a memory map; running off the end means the file is truncated."""

    _SCALARS: ClassVar[dict[int, str]] = {
        0: "B",
        1: "b",
        2: "H",
        3: "h",
        4: "I",
        5: "i",
        6: "f",
        7: "?",
        10: "Q",
        11: "q",
        12: "d",
    }

    def __init__(self, buf: mmap.mmap | bytes) -> None:
        self.buf = buf
        self.pos = 0

    def take(self, fmt: str) -> Any:
        size = struct.calcsize("<" + fmt)
        if self.pos + size > len(self.buf):
            raise _Truncated
        (value,) = struct.unpack_from("<" + fmt, self.buf, self.pos)
        self.pos += size
        return value

    def string(self) -> str:
        n = self.take("Q")
        if self.pos + n > len(self.buf):
            raise _Truncated
        raw = self.buf[self.pos : self.pos + n]
        self.pos += n
        return bytes(raw).decode("utf-8", errors="replace")

    def value(self, vtype: int) -> Any:
        if vtype in self._SCALARS:
            return self.take(self._SCALARS[vtype])
        if vtype == 8:
            return self.string()
        if vtype == 9:
            etype, count = self.take("I"), self.take("Q")
            if etype in self._SCALARS:  # skip without building a list
                self.pos += count * struct.calcsize("<" + self._SCALARS[etype])
                if self.pos > len(self.buf):
                    raise _Truncated
                return None
            if etype == 8:  # string arrays (a vocabulary): the hot loop of this check
                unpack, buf, pos, size = _U64.unpack_from, self.buf, self.pos, len(self.buf)
                for _ in range(count):
                    if pos + 8 > size:
                        raise _Truncated
                    pos += 8 + unpack(buf, pos)[0]
                self.pos = pos
                if pos > size:
                    raise _Truncated
                return None
            for _ in range(count):
                self.value(etype)
            return None
        raise ValueError(f"unknown metadata value type {vtype}")


def _tensor_nbytes(ggml_type: int, dims: Sequence[int]) -> int | None:
    try:
        import gguf

        block, type_size = gguf.GGML_QUANT_SIZES[gguf.GGMLQuantizationType(ggml_type)]
    except (ImportError, ValueError, KeyError):
        return None
    return math.prod(dims) // block * type_size


def check_gguf(path: str | os.PathLike[str], what: str = "model") -> Path:
    """Raise :class:`ModelFileError` (one line naming the file) unless ``path`` is a whole GGUF.

    Checks existence, the ``GGUF`` magic, the version, and that the file is as long as its
    header says (header parsed here; tensor data not read).
    """
    p = Path(path)
    if not p.exists():
        raise ModelFileError(f"{what} file not found: {p}")
    if p.is_dir():
        raise ModelFileError(f"{what} file {p} is a directory, not a .gguf file")
    size = p.stat().st_size
    with p.open("rb") as f:
        magic = f.read(4)
        if magic != GGUF_MAGIC:
            if not magic:
                raise ModelFileError(f"{what} file {p} is empty (0 bytes); copy it again")
            if len(magic) < 4 and GGUF_MAGIC.startswith(magic):
                raise ModelFileError(f"{what} file {p} is truncated ({size} bytes); copy it again")
            raise ModelFileError(
                f"{what} file {p} is not a GGUF file (starts with {magic!r}, expected b'GGUF'); "
                "convert it with llama.cpp's convert_hf_to_gguf.py"
            )
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf:
            reader = _HeaderReader(buf)
            reader.pos = 4
            try:
                version = reader.take("I")
                if version not in (2, 3):
                    raise ModelFileError(
                        f"{what} file {p} has GGUF version {version}; only versions 2 and 3 "
                        "are supported (re-convert it with a current llama.cpp)"
                    )
                n_tensors, n_kv = reader.take("Q"), reader.take("Q")
                alignment = 32
                for _ in range(n_kv):
                    key = reader.string()
                    value = reader.value(reader.take("I"))
                    if key == "general.alignment" and isinstance(value, int):
                        alignment = value
                end = 0
                for _ in range(n_tensors):
                    reader.string()
                    dims = [reader.take("Q") for _ in range(reader.take("I"))]
                    ggml_type, offset = reader.take("I"), reader.take("Q")
                    nbytes = _tensor_nbytes(ggml_type, dims)
                    end = max(end, offset + (nbytes or 0))
                data_start = -(-reader.pos // alignment) * alignment
            except _Truncated:
                raise ModelFileError(
                    f"{what} file {p} is truncated: its header runs past the end of the file "
                    f"({size} bytes); the download or copy is incomplete"
                ) from None
            except (ValueError, UnicodeDecodeError, MemoryError) as error:
                raise ModelFileError(
                    f"{what} file {p} has a corrupt GGUF header: {error}"
                ) from None
    expected = data_start + end if n_tensors else reader.pos
    if size < expected:
        raise ModelFileError(
            f"{what} file {p} is truncated: {size} bytes, but its tensors need {expected}; "
            "the download or copy is incomplete"
        )
    return p


# ---------------------------------------------------------------------------------------------
# Quiet llama.cpp


@contextlib.contextmanager
def _captured_stderr() -> Iterator[list[str]]:
    """Send llama.cpp's stderr (C level and its Python log callback) to a buffer.

    Yields a list that holds the captured text once the block ends, to quote in errors.
    """
    box: list[str] = []
    # Let llama-cpp-python's log callback print everything (into the buffer): its level map
    # predates ggml's renumbered levels and would drop llama.cpp's error lines.
    logger = logging.getLogger("llama-cpp-python")
    saved_level = logger.level
    logger.setLevel(logging.DEBUG)
    sys.stderr.flush()
    saved_fd = os.dup(2)
    saved_stream = sys.stderr
    python_side = io.StringIO()
    with tempfile.TemporaryFile() as tmp:
        os.dup2(tmp.fileno(), 2)
        sys.stderr = python_side
        try:
            yield box
        finally:
            sys.stderr = saved_stream
            logger.setLevel(saved_level)
            os.dup2(saved_fd, 2)
            os.close(saved_fd)
            tmp.seek(0)
            box.append(tmp.read().decode("utf-8", errors="replace") + python_side.getvalue())


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1][:300] if lines else ""


# ---------------------------------------------------------------------------------------------
# The model


class LlamaCppModel:
    """A GGUF model (optionally with a LoRA adapter GGUF) decoded greedily by llama.cpp.

    ``chat_template`` names a fallback template (``gemma``, ``llama3``, ``chatml``) used in
    chat mode only when the GGUF carries no ``tokenizer.chat_template`` of its own.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        lora_path: str | os.PathLike[str] | None = None,
        n_ctx: int = 2048,
        n_threads: int | None = None,
        n_gpu_layers: int = 0,
        seed: int = 0,
        chat_template: str | None = None,
    ) -> None:
        if chat_template is not None and chat_template not in FALLBACK_CHAT_TEMPLATES:
            raise ConfigError(
                f"unknown chat template {chat_template!r}; pass --chat-template "
                + "|".join(FALLBACK_CHAT_TEMPLATES)
            )
        self.path = check_gguf(path, "model")
        self.lora_path = check_gguf(lora_path, "adapter") if lora_path is not None else None
        self.n_ctx = n_ctx
        self.seed = seed
        self.n_gpu_layers = n_gpu_layers

        import llama_cpp

        self._llama_cpp = llama_cpp
        with _captured_stderr() as log:
            try:
                self._llama = llama_cpp.Llama(
                    model_path=str(self.path),
                    n_ctx=n_ctx,
                    # Small batches keep llama.cpp's worst-case logits buffer small (Gemma's
                    # 262k vocabulary: 512 tokens would reserve 512 MiB) and match score()'s.
                    n_batch=_SCORE_CHUNK,
                    n_ubatch=_SCORE_CHUNK,
                    # llama-cpp-python's default is half the cores (1 of 2 here): use them all.
                    n_threads=n_threads or os.cpu_count(),
                    n_threads_batch=n_threads or os.cpu_count(),
                    n_gpu_layers=n_gpu_layers,
                    seed=seed,
                    logits_all=False,
                    verbose=False,
                )
                error: Exception | None = None
            except (ValueError, RuntimeError) as e:
                error = e
        if error is not None:
            detail = _last_line(log[0]) or str(error)
            raise ModelFileError(
                f"model file {self.path} could not be loaded by llama.cpp: {detail}"
            ) from None
        if self.lora_path is not None:
            self._apply_adapter(self.lora_path)

        self._gguf_template: str | None = self._llama.metadata.get("tokenizer.chat_template")
        self._fallback = chat_template
        if self._gguf_template:
            source: str | None = "gguf"
        elif chat_template:
            source = f"fallback:{chat_template}"
        else:
            source = None
        self.name = self.path.stem + (f"+{self.lora_path.stem}" if self.lora_path else "")
        self.info = ModelInfo(
            name=self.name,
            path=str(self.path),
            sha256=file_sha256(self.path),
            adapter_path=str(self.lora_path) if self.lora_path else None,
            adapter_sha256=file_sha256(self.lora_path) if self.lora_path else None,
            chat_template_source=source,
        )

    def _apply_adapter(self, lora_path: Path) -> None:
        # Not Llama(lora_path=...): llama-cpp-python 0.3.36 tests the adapter pointer with
        # `is None`, so an adapter llama.cpp rejects is silently left out.
        llama_cpp = self._llama_cpp
        with _captured_stderr() as log:
            adapter = llama_cpp.llama_adapter_lora_init(
                self._llama._model.model, str(lora_path).encode("utf-8")
            )
        if not adapter:  # a NULL pointer
            self.close()
            lines = [line for line in log[0].splitlines() if "failed" in line] or [log[0]]
            detail = _last_line(lines[-1]).split(": ", 1)[-1] or "llama.cpp rejected it"
            raise AdapterMismatch(
                f"adapter {lora_path} does not fit base model {self.path}: {detail}"
            )
        self._llama._stack.callback(llama_cpp.llama_adapter_lora_free, adapter)
        self._adapters = (llama_cpp.llama_adapter_lora_p_ctypes * 1)(adapter)
        self._adapter_scales = (ctypes.c_float * 1)(1.0)
        with _captured_stderr() as log:
            rc = llama_cpp.llama_set_adapters_lora(
                self._llama._ctx.ctx, self._adapters, 1, self._adapter_scales
            )
        if rc != 0:
            self.close()
            raise AdapterMismatch(
                f"adapter {lora_path} could not be applied to base model {self.path}: "
                f"{_last_line(log[0]) or f'llama_set_adapters_lora returned {rc}'}"
            )

    # -- what the runner needs -----------------------------------------------------------------

    @property
    def decoding(self) -> Mapping[str, object]:
        """Settings that change outputs (part of the runner's cache key)."""
        return {
            "backend": "llama-cpp-python",
            "version": self._llama_cpp.__version__,
            "temperature": 0.0,
            "top_k": 1,
            "repeat_penalty": 1.0,
            "n_ctx": self.n_ctx,
            "n_batch": _SCORE_CHUNK,  # how tokens are grouped changes the logits slightly
            "n_gpu_layers": self.n_gpu_layers,
            "seed": self.seed,
        }

    def tokenize(self, text: str, *, bos: bool = False) -> list[int]:
        """Token ids of ``text``; special tokens such as ``<start_of_turn>`` are parsed."""
        return list(self._llama.tokenize(text.encode("utf-8"), add_bos=bos, special=True))

    def count_tokens(self, text: str) -> int:
        return len(self.tokenize(text))

    def max_tokens_for(self, answer: str) -> int:
        """Generation budget for an expected answer text (see :func:`max_tokens_for`)."""
        return max_tokens_for(self.count_tokens(answer))

    def chat_prompt(self, item_or_text: Item | str) -> str:
        """One user message in the model's chat template, followed by the assistant cue."""
        message = item_or_text.user_message if isinstance(item_or_text, Item) else item_or_text
        if self._gguf_template:
            return self._render_gguf_template(self._gguf_template, message)
        if self._fallback:
            return FALLBACK_CHAT_TEMPLATES[self._fallback].format(message=message)
        raise ConfigError(
            f"model {self.path} has no chat template; pass --chat-template "
            + "|".join(FALLBACK_CHAT_TEMPLATES)
        )

    def _render_gguf_template(self, template: str, message: str) -> str:
        import jinja2
        import jinja2.ext
        from jinja2.sandbox import ImmutableSandboxedEnvironment

        def raise_exception(text: str) -> None:
            raise ConfigError(f"chat template of {self.path} refused the prompt: {text}")

        env = ImmutableSandboxedEnvironment(
            loader=jinja2.BaseLoader(),
            trim_blocks=True,
            lstrip_blocks=True,
            extensions=[jinja2.ext.loopcontrols],
        )
        model = self._llama._model
        bos = model.token_get_text(self._llama.token_bos()) if self._llama.token_bos() >= 0 else ""
        eos = model.token_get_text(self._llama.token_eos()) if self._llama.token_eos() >= 0 else ""
        try:
            text = env.from_string(template).render(
                messages=[{"role": "user", "content": message}],
                add_generation_prompt=True,
                bos_token=bos,
                eos_token=eos,
                raise_exception=raise_exception,
            )
        except jinja2.TemplateError as error:
            raise ConfigError(
                f"chat template of {self.path} cannot be rendered ({error}); "
                "pass --chat-template " + "|".join(FALLBACK_CHAT_TEMPLATES)
            ) from None
        # The tokenizer adds BOS itself; a second one from the template would confuse the model.
        if bos and model.add_bos_token() and text.startswith(bos):
            text = text[len(bos) :]
        return text

    # -- generation and scoring ----------------------------------------------------------------

    def _check_fits(self, n_prompt: int, n_more: int, what: str) -> None:
        if n_prompt + n_more > self.n_ctx:
            needed = n_prompt + n_more
            suggestion = 1 << (needed - 1).bit_length()
            raise ContextTooSmall(
                f"model {self.name}: prompt of {n_prompt} tokens + {n_more} {what} = {needed} "
                f"tokens > n_ctx {self.n_ctx}; pass --n-ctx {suggestion} or more"
            )

    def complete(
        self, prompt: str, *, max_tokens: int, stop: Sequence[str] = ("\n\n",)
    ) -> Completion:
        """Greedy completion of ``prompt`` (raw text; use :meth:`chat_prompt` for chat mode)."""
        tokens = self.tokenize(prompt, bos=True)
        self._check_fits(len(tokens), max_tokens, "answer tokens (max_tokens)")
        self._llama.reset()  # start clean: outputs must not depend on the previous prompt
        out: Any = self._llama.create_completion(
            tokens,
            max_tokens=max_tokens,
            temperature=0.0,
            top_k=1,
            top_p=1.0,
            min_p=0.0,
            repeat_penalty=1.0,
            stop=list(stop),
            seed=self.seed,
        )
        choice = out["choices"][0]
        return Completion(
            text=choice["text"],
            n_tokens=int(out["usage"]["completion_tokens"]),
            finish_reason="length" if choice["finish_reason"] == "length" else "stop",
        )

    def score(self, prompt: str, answer: str) -> float:
        """Teacher-forced sum of the natural-log probabilities of ``answer``'s tokens after
        ``prompt`` (the answer tokenized on its own, as generation would produce it)."""
        return float(sum(self.token_logprobs(prompt, answer)))

    def token_logprobs(self, prompt: str, answer: str) -> list[float]:
        """Per-token log-probabilities of ``answer`` (tokenized on its own) given ``prompt``."""
        llama_cpp = self._llama_cpp
        llm = self._llama
        prompt_tokens = self.tokenize(prompt, bos=True)
        answer_tokens = self.tokenize(answer)
        if not answer_tokens:
            return []
        self._check_fits(len(prompt_tokens), len(answer_tokens), "answer tokens")
        tokens = prompt_tokens + answer_tokens
        first_out = len(prompt_tokens) - 1  # logits here predict answer_tokens[0]
        n_decode = len(tokens) - 1  # the last token's logits are not needed
        n_vocab = llm.n_vocab()
        batch = llm._batch.batch

        llm.reset()
        memory = llama_cpp.llama_get_memory(llm._ctx.ctx)
        llama_cpp.llama_memory_clear(memory, True)
        logprobs: list[float] = []
        start = 0
        try:
            while start < n_decode:
                # Chunks start at multiples of _SCORE_CHUNK, as one llama_decode of the whole
                # text would group them: llama.cpp's CPU kernels work on blocks of rows, and
                # shifting the blocks changes the logits by up to ~0.1 nat on Gemma.
                end = min(start + _SCORE_CHUNK, n_decode)
                batch.n_tokens = end - start
                for j, pos in enumerate(range(start, end)):
                    batch.token[j] = tokens[pos]
                    batch.pos[j] = pos
                    batch.n_seq_id[j] = 1
                    batch.seq_id[j][0] = 0
                    batch.logits[j] = 1 if pos >= first_out else 0
                rc = llama_cpp.llama_decode(llm._ctx.ctx, batch)
                if rc != 0:
                    raise RuntimeError(f"llama_decode returned {rc} while scoring with {self.name}")
                outputs = [pos for pos in range(start, end) if pos >= first_out]
                if outputs:
                    rows = np.ctypeslib.as_array(
                        llama_cpp.llama_get_logits(llm._ctx.ctx), shape=(len(outputs) * n_vocab,)
                    ).reshape(len(outputs), n_vocab)
                    rows64 = rows.astype(np.float64)
                    peak = rows64.max(axis=1, keepdims=True)
                    lse = peak[:, 0] + np.log(np.exp(rows64 - peak).sum(axis=1))
                    targets = [tokens[pos + 1] for pos in outputs]
                    chosen = rows64[np.arange(len(outputs)), targets]
                    logprobs.extend((chosen - lse).tolist())
                start = end
        finally:
            llama_cpp.llama_memory_clear(memory, True)
            llm.reset()
        return logprobs

    def close(self) -> None:
        """Free llama.cpp's model and context (quietly); also done when garbage-collected."""
        llama = self.__dict__.pop("_llama", None)
        if llama is not None:
            with _captured_stderr():
                llama.close()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):  # at interpreter exit modules may be gone
            self.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"LlamaCppModel({str(self.path)!r}, lora_path={self.lora_path!r}, n_ctx={self.n_ctx})"
        )
