"""Decoding on a loaded model: tokens grouped into ``llama_decode`` calls, logits only where
asked for, and greedy generation of several requests as separate sequences in one call."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from simonsca.models.base import Completion, GenerationRequest, watch_cut
from simonsca.models.llamacpp.loading import UBATCH, LoadedModel
from simonsca.models.llamacpp.native import LOG, reason

#: Logits rows requested per decode call when teacher forcing.
MAX_OUTPUTS = UBATCH
#: Prompt tokens per decode call before greedy generation. Kept at 64, the grouping every
#: earlier simonsca answer was generated with: how tokens are grouped moves the logits in their
#: last bits, and with them near-tied greedy choices.
PREFILL_CHUNK = 64


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


class Decoder(LoadedModel):
    """Decode calls and greedy generation over a :class:`LoadedModel`."""

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
        with LOG.capture() as log:
            rc = lc.llama_decode(self._ctx, batch)
        if rc != 0:
            raise RuntimeError(
                f"llama_decode returned {rc} with {self.name}: {reason(log, 'no reason given')}"
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
