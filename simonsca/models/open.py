"""Opening the model a :class:`~simonsca.models.base.ModelSpec` names, with a run's settings: the
one place that picks the backend (a served model for a URL, llama.cpp in this process for a
GGUF file). The backends themselves are imported only when one is opened."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from simonsca.errors import ConfigError
from simonsca.models.base import Model, ModelSpec

if TYPE_CHECKING:
    from simonsca.settings import Settings


def open_model(spec: ModelSpec, settings: Settings, *, lora: Path | None = None) -> Model:
    """The model ``spec`` names, loaded with ``settings`` (context, threads, GPU layers, batch,
    chat template; a served model's concurrency and timeout), with ``lora`` applied instead of
    ``spec.lora`` when given. A LoRA for a served model is refused in one line: the server
    applies its own (named in the URL)."""
    adapter = lora if lora is not None else spec.lora
    if spec.is_url:
        from simonsca.models.served import open_served_model

        if adapter is not None:
            raise ConfigError(
                "--lora applies to GGUF files; for a served model name the adapter in the URL "
                "(URL#adapter-name)"
            )
        return open_served_model(
            str(spec.path),
            concurrency=settings.concurrency,
            timeout=settings.request_timeout,
            chat_template=settings.chat_template,
            n_ctx=settings.n_ctx,
        )
    from simonsca.models.llamacpp import LlamaCppModel

    return LlamaCppModel(
        spec.path,
        lora_path=adapter,
        n_ctx=settings.n_ctx,
        n_threads=settings.n_threads,
        n_gpu_layers=settings.n_gpu_layers,
        n_seq=settings.batch_size,
        chat_template=settings.chat_template,
    )


@contextmanager
def opened(spec: ModelSpec, settings: Settings, *, lora: Path | None = None) -> Iterator[Model]:
    """:func:`open_model` for a ``with`` block: the model is closed when the block ends."""
    model = open_model(spec, settings, lora=lora)
    try:
        yield model
    finally:
        model.close()
