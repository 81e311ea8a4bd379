"""Teacher forcing on a loaded model: how likely a given answer is, token by token, with logits
only at the answer and stop positions."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from simonsca.models.base import AnswerLikelihood, LikelihoodRequest, is_top_choice
from simonsca.models.llamacpp.generation import PREFILL_CHUNK, Decoder


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
