"""Teacher forcing over a server: the answer's tokens cut as the in-process backend cuts them,
and per-token results gathered into an :class:`~simonsca.models.base.AnswerLikelihood`."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from simonsca.models.base import AnswerLikelihood, LikelihoodRequest, is_top_choice

#: Log-probability reported for a token whose probability underflowed to 0.
LOGPROB_FLOOR = -1.0e4


@dataclass(frozen=True)
class ForcingPlan:
    """The tokens of one teacher-forced answer, cut as the in-process backend cuts them."""

    prompt: list[int]
    forced: list[int]  # answer tokens, then stop tokens
    n_answer: int
    boundary: str


def plan_forcing(
    tokenize: Callable[[str, bool], list[int]], request: LikelihoodRequest
) -> ForcingPlan:
    """Prompt and answer tokens exactly as ``LlamaCppModel._force_group`` cuts them, with the
    server's tokenizer (``tokenize(text, with_bos)``)."""

    def answer_tokens(prompt: str, answer: str) -> tuple[list[int], list[int], str]:
        prompt_tokens = tokenize(prompt, True)
        joint = tokenize(prompt + answer, True)
        if joint[: len(prompt_tokens)] == prompt_tokens:
            return prompt_tokens, joint[len(prompt_tokens) :], "joint"
        return prompt_tokens, tokenize(answer, False), "separate"

    prompt_tokens, forced, boundary = answer_tokens(request.prompt, request.answer + request.stop)
    n_answer = len(forced)
    if request.stop:
        body = answer_tokens(request.prompt, request.answer)[1]
        n_answer = len(body)
        if forced[: len(body)] != body:
            # The stop merged into the answer's last token (an answer ending in a line break):
            # score the answer's own tokens, then the stop's, as the in-process backend does.
            forced = body + tokenize(request.stop, False)
    return ForcingPlan(prompt_tokens, forced, n_answer, boundary)


#: The margin of a forced token when the server listed no other token beside it: nothing shows
#: that it beat the rest, so it is scored like a tie (not the model's choice).
NO_RIVAL_SEEN = 0.0


def summarise_forcing(
    plan: ForcingPlan,
    logprobs: Sequence[float],
    margins: Sequence[float],
    pieces: Sequence[bytes],
    eog_next: bool,
) -> AnswerLikelihood:
    """Per-token results (forced tokens in order) into an :class:`AnswerLikelihood`;
    ``margins[k]``: the best other token's log-prob minus forced token k's (see
    :func:`~simonsca.models.base.is_top_choice`)."""
    n = plan.n_answer
    ends: list[int] = []
    position = 0
    for piece in pieces[:n]:
        position += len(piece)
        ends.append(position)
    return AnswerLikelihood(
        token_ends=tuple(ends),
        logprobs=tuple(float(x) for x in logprobs[:n]),
        margins=tuple(float(m) for m in margins[:n]),
        stop_logprob=float(sum(logprobs[n:])),
        stop_greedy=eog_next or all(is_top_choice(m) for m in margins[n:]),
        boundary=plan.boundary,
    )
