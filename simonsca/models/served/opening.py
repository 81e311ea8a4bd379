"""Opening a model given as a URL: connect, find out which server answers and what it serves,
and return the :class:`~simonsca.models.served.model.ServedModel`."""

from __future__ import annotations

from simonsca.errors import ConfigError
from simonsca.models.served.client import HttpClient
from simonsca.models.served.detection import describe_server
from simonsca.models.served.facts import ServerFacts
from simonsca.models.served.model import ServedModel
from simonsca.models.served.url import parse_model_url


def open_served_model(
    url: str,
    *,
    concurrency: int | None = None,
    timeout: float = 600.0,
    chat_template: str | None = None,
    n_ctx: int | None = None,
) -> ServedModel:
    """Connect to the server at ``url``, find out what it is and serves, and return the model.

    ``concurrency``: requests in flight (default: llama-server's slot count, 4 for vLLM, else
    1). ``timeout``: seconds to wait for one answer. ``chat_template``: a fallback template name
    rendered here in chat mode (otherwise the server's own template is used). ``n_ctx``: the
    context where the server does not report one (Ollama: sent as ``num_ctx``; llama-cpp-python:
    a cap on the probed value). Raises a one-line :class:`~simonsca.errors.SimonscaError`.
    """
    if timeout <= 0:
        raise ConfigError(f"timeout must be > 0 seconds, got {timeout}")
    if n_ctx is not None and n_ctx < 16:
        raise ConfigError(f"n_ctx must be >= 16 tokens, got {n_ctx}")
    root, name = parse_model_url(url)
    http = HttpClient(root, timeout=timeout)
    try:
        facts = describe_server(http, name, n_ctx=n_ctx)
        return ServedModel(
            http,
            facts,
            url=url.strip(),
            concurrency=concurrency if concurrency is not None else default_concurrency(facts),
            chat_template=chat_template,
        )
    except BaseException:
        http.close()
        raise


def default_concurrency(facts: ServerFacts) -> int:
    """Requests in flight when the user does not say: llama-server's slot count, 4 for vLLM
    (it batches continuously but reports no limit), 1 elsewhere."""
    if facts.kind == "llama-server":
        return max(1, facts.slots or 1)
    if facts.kind == "vllm":
        return 4
    return 1
