"""Training examples for the from-scratch control, tokenised by llama.cpp itself -- no torch.

Items are simonsca's v5 items (:func:`simonsca.finetune.data.training_items`: seeds in
``[100000, 900000)``, never an eval seed) on the default eval family's sides and tasks. Token ids
come from llama.cpp's tokenizer loaded from the model's own GGUF (vocab only), the way
:class:`simonsca.models.llamacpp.LlamaCppModel` splits a prompt and its answer for teacher
forcing, so training sees exactly the ids the judged model is fed.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from simonsca.finetune.data import Example, ItemFilter, answer_text, build_example, training_items
from simonsca.tasks import Item


class LlamaCppTokens:
    """Prompt/answer token ids as llama.cpp produces them for a GGUF's vocabulary."""

    def __init__(self, gguf_path: str | Path) -> None:
        from simonsca.models.llamacpp import load_tokenizer

        self._tok = load_tokenizer(gguf_path)

    def example(self, item: Item) -> Example:
        """``BOS + prompt`` then ``output + "\\n\\n"``, split as teacher forcing splits them."""
        prompt_ids, answer_ids, _ = self._tok.answer_tokens(item.prompt, answer_text(item))
        return build_example(prompt_ids, answer_ids)

    def ids(self, text: str, *, bos: bool = False) -> list[int]:
        return self._tok.tokenize(text, bos=bos, special=False)


def example_stream(
    tokens: LlamaCppTokens, seed_start: int, item_filter: ItemFilter
) -> Iterator[tuple[int, Example]]:
    """(seed, example) for every accepted v5 item from ``seed_start`` upwards, in seed order."""
    for item in training_items(seed_start, item_filter):
        yield item.seed, tokens.example(item)
