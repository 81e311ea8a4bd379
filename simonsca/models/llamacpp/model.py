""":class:`LlamaCppModel`: a GGUF model (and LoRA adapter) run by llama.cpp in this process, put
together from its parts -- loading (:mod:`.loading`), decoding and greedy generation
(:mod:`.generation`) and teacher forcing (:mod:`.forcing`)."""

from __future__ import annotations

import os

from simonsca.models.llamacpp.forcing import TeacherForcing


class LlamaCppModel(TeacherForcing):
    """A GGUF model (optionally with a LoRA adapter GGUF) run by llama.cpp in this process.

    ``n_ctx`` is the context of *each* sequence; ``n_seq`` how many sequences decode together
    (batched generation and scoring; results can differ from one-at-a-time decoding in the last
    bits of the logits, so ``n_seq`` is part of :attr:`decoding`). ``n_gpu_layers=None`` offloads
    every layer when the llama.cpp build supports a GPU, none otherwise. ``chat_template`` names a
    fallback template (``gemma``, ``llama3``, ``chatml``) used in chat mode only when the GGUF
    carries none of its own. ``vocab_only`` loads the tokenizer alone (no weights, no context).
    :meth:`use_adapter` swaps the adapter on the loaded model (a checkpoint sweep on one base).
    """

    capabilities = frozenset({"generate", "teacher-forced"})


def load_tokenizer(path: str | os.PathLike[str]) -> LlamaCppModel:
    """The model's tokenizer alone (no weights): for counting tokens in training data."""
    return LlamaCppModel(path, vocab_only=True)
