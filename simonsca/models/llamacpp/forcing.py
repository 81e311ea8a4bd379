"""Teacher forcing on a loaded model: how likely a given answer is, token by token, with logits
only at the answer and stop positions."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
from gguf import GGMLQuantizationType

from simonsca.models.base import AnswerLikelihood, LikelihoodRequest, is_top_choice
from simonsca.models.llamacpp.generation import PREFILL_CHUNK, Decoder

#: Most answers decoded side by side per call in :meth:`TeacherForcing._stepwise` (llama.cpp's CPU
#: kernels for repacked weights take 4 rows at a time with a kernel other than a single row's).
MAX_SIDE_BY_SIDE = 3


class TeacherForcing(Decoder):
    """Teacher-forced scores over a :class:`Decoder`."""

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
        grouped differently into decode calls); its ``n_seq`` answers share each call only
        where every row's logits stay as they are alone (see :meth:`_stepwise`)."""
        self._require_context()
        group_size = min(self.n_seq, n_seq or 1)
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
            if stepwise:
                rows = self._stepwise([(seq, tokens, first) for seq, tokens, first, *_ in plans])
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

    def _stepwise(self, plans: Sequence[tuple[int, list[int], int]]) -> list[np.ndarray]:
        """One token per decode call, as greedy generation decodes: each sequence's prompt alone
        in chunks of :data:`PREFILL_CHUNK`, then its answer one token per call; rows in
        ``plans`` order (``(seq_id, tokens, first)``, ``first`` the position whose logits
        predict the first answer token).

        Several sequences share each call (the weights are read once for all of them) only
        where that gives every row exactly the logits it gets alone: a quantized model
        (:meth:`side_by_side_rows`), at most :data:`MAX_SIDE_BY_SIDE` rows (llama.cpp's CPU
        kernels for repacked weights take four rows at a time with another kernel than one
        row: on Gemma 3 270M Q4_K_M, 6 rows per call moved a token's log-prob by up to 0.26
        nats against one row per call, 3 rows moved none), and the first call with each number
        of rows decoded again row by row and compared bit for bit; at a difference the answers
        are decoded one at a time."""
        if len(plans) > 1 and self.side_by_side_rows() > 1:
            try:
                return self._side_by_side(plans)
            except _RowsDiffer:
                self._clear()
        out: list[np.ndarray] = []
        for plan in plans:
            out.extend(self._side_by_side([plan]))
            self._clear()
        return out

    def side_by_side_rows(self) -> int:
        """How many answers :meth:`likelihood_many` with ``stepwise`` may decode side by side:
        :data:`MAX_SIDE_BY_SIDE` when every matrix the model multiplies is stored quantized and
        no adapter is applied, else 1. llama.cpp quantizes each row of activations on its own
        before a product with quantized weights, so a row's result does not depend on the rows
        beside it (measured bit-identical: Gemma 3 270M Q4_K_M, the tiny llama in Q8_0, Q5_0,
        Q4_1 and Q4_0); float weights (F16, an adapter's F32) go through kernels that sum in
        another order for several rows (the tiny llama in F16: up to 6.7e-4 nats)."""
        if self.lora_path is not None or self.n_gpu_layers != 0:
            return 1
        floats = {
            GGMLQuantizationType.F32,
            GGMLQuantizationType.F16,
            GGMLQuantizationType.BF16,
            GGMLQuantizationType.F64,
        }
        matrices = [t for t in self.header.tensors if len(t.shape) >= 2]
        if any(t.tensor_type in floats for t in matrices):
            return 1
        return MAX_SIDE_BY_SIDE

    def _side_by_side(self, plans: Sequence[tuple[int, list[int], int]]) -> list[np.ndarray]:
        per_seq: list[list[np.ndarray]] = []
        for seq, tokens, first in plans:
            prompt = [(t, pos, seq, pos == first) for pos, t in enumerate(tokens[: first + 1])]
            per_seq.append(self._feed(prompt, chunk=PREFILL_CHUNK))
        checked = {1}  # row counts whose rows are known to match one-row decoding
        step = 1
        while True:
            entries = [
                (tokens[first + step], first + step, seq, True)
                for seq, tokens, first in plans
                if first + step < len(tokens) - 1
            ]
            if not entries:
                break
            rows = self._decode(entries)
            if len(entries) not in checked:
                for entry, row in zip(entries, rows):
                    self._lc.llama_memory_seq_rm(self._memory, entry[2], entry[1], -1)
                    if not np.array_equal(self._decode([entry])[0], row):
                        raise _RowsDiffer
                checked.add(len(entries))
            it = iter(rows)
            for k, (_, tokens, first) in enumerate(plans):
                if first + step < len(tokens) - 1:
                    per_seq[k].append(next(it))
            step += 1
        return [row for rows in per_seq for row in rows]

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


class _RowsDiffer(Exception):
    """Rows decoded in one call differ from the same rows decoded alone."""


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
