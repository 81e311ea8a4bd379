"""Teacher-forced scores: how likely a model finds the *right* answer, and where it would go wrong.

Generation only sees the surface: when base and finetuned write the same (wrong) answer, it
cannot tell a finetune that did nothing from one that moved the model a long way toward the right
answer without yet flipping a greedy token. Feeding the expected answer token by token (teacher
forcing) can. Per item (:class:`ForcedScore`):

* ``nll`` -- mean negative log-likelihood of the answer's tokens, nats per token (the stop after
  it not counted); ``answer_logprob`` -- the log-probability of the whole answer (sum);
* ``forced_cell_accuracy`` -- the share of the answer's cells whose token is the model's top
  choice given the right prefix (a cell is written by the token holding its character; a token
  holding several cells counts for each of them);
* ``greedy_exact`` -- every answer token and the stop are the top choice: greedy decoding would
  reproduce the answer exactly.

How the prompt/answer token boundary is handled: see ``LlamaCppModel.answer_tokens`` (the
answer's tokens are those a model trained on the whole text would produce after the prompt's own
tokens).
"""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass

from simonsca.models.base import AnswerLikelihood
from simonsca.tasks import Item, Task


@dataclass(frozen=True)
class ForcedScore:
    """How one model's teacher-forced view of one item's expected answer came out."""

    seed: int
    facets: tuple[tuple[str, str], ...]
    task: str
    n_tokens: int
    nll: float
    answer_logprob: float
    forced_cell_accuracy: float | None  # None when cells cannot be mapped to tokens
    greedy_exact: bool
    n_greedy_tokens: int  # answer tokens that are the top choice
    boundary: str


def cell_offsets(item: Item) -> list[int]:
    """Byte offsets in the expected answer's UTF-8 text where each cell's value is written.

    Next generation: every character that is not a row or cell separator (symbols are single
    characters); neighbour counts: every digit of the JSON.
    """
    text = item.output
    if item.task is Task.COUNT:
        return [i for i, ch in enumerate(text) if ch.isdigit()]
    separators = {item.symbols.row_sep, item.symbols.cell_sep} - {""}
    offsets: list[int] = []
    position = 0
    for ch in text:
        if ch not in separators:
            offsets.append(position)
        position += len(ch.encode("utf-8"))
    return offsets


def forced_score(item: Item, likelihood: AnswerLikelihood) -> ForcedScore:
    """Score one teacher-forced answer against its item."""
    offsets = cell_offsets(item)
    cells = int(item.expected.size)
    ends = likelihood.token_ends
    accuracy: float | None = None
    if len(offsets) == cells and ends and ends[-1] == len(item.output.encode("utf-8")):
        right = 0
        for offset in offsets:
            token = bisect_right(ends, offset)  # the first token ending after the offset
            right += likelihood.greedy[token]
        accuracy = right / cells if cells else 1.0
    logprob = float(sum(likelihood.logprobs))
    return ForcedScore(
        seed=item.seed,
        facets=tuple(item.family_facets.items()),
        task=item.task.value,
        n_tokens=likelihood.n_tokens,
        nll=likelihood.nll,
        answer_logprob=logprob,
        forced_cell_accuracy=accuracy,
        greedy_exact=likelihood.greedy_exact,
        n_greedy_tokens=sum(likelihood.greedy),
        boundary=likelihood.boundary,
    )
