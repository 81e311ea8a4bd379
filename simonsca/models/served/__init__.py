"""A model behind an HTTP server: llama-server, llama-cpp-python's server, vLLM, Ollama, LM Studio.

A URL ``http://host:port[/v1][#name]`` stands wherever a GGUF path does:
:func:`open_served_model` finds out which server answers there and returns a
:class:`ServedModel`, the :class:`~simonsca.models.base.Model` protocol over HTTP (httpx).
``#name`` picks one model (or, on llama-server, one LoRA adapter) among those served; without it
the server must serve exactly one model (LM Studio: exactly one loaded).

What each server kind can do differs, and the backend says so instead of faking it
(:data:`SUPPORT` is the table):

* greedy generation everywhere (temperature 0, ``top_k`` 1 where accepted, seed 0, no penalties);
* teacher forcing only where the server reports log-probabilities of *given* tokens: vLLM
  (``prompt_logprobs``, one request per answer), llama-cpp-python's server (``echo`` +
  ``logprobs``, one request per answer) and llama-server (one request per answer token: the
  token is forced with ``logit_bias`` and ``n_probs`` reports its raw log-probability, on a
  pinned slot with ``cache_prompt``). Ollama and LM Studio raise :class:`ScoringUnsupported`.

Prompt lengths are checked before a request is sent (Ollama cuts an over-long prompt silently;
llama-cpp-python silently lowers ``max_tokens``): with the server's tokenizer where it has one,
otherwise with the prompt's UTF-8 byte count, an upper bound on its tokens.

Nothing here knows the file behind the URL, so ``info.sha256`` is ``None``; ``served["identity"]``
hashes what the server reports (kind, model id, version, context, adapters, digest where given).
That is weaker than a file hash: a different file served under the same id and version looks the
same.

The modules, each with one job: ``url`` (parsing ``URL#name``), ``client`` (HTTP with retries and
one-line errors), ``detection`` (which server kind answers), ``kinds/`` (one module per server
kind: what it reports and what its requests look like), ``names`` (which model ``#name`` picks),
``facts`` (the record of what a server serves), ``forcing`` (teacher forcing's token plan),
``support`` (the support table), ``model`` (:class:`ServedModel`), ``opening``
(:func:`open_served_model`).
"""

from simonsca.models.served.client import HttpClient, ScoringUnsupported, ServerError
from simonsca.models.served.detection import describe_server, detect_kind
from simonsca.models.served.facts import ServerFacts, ServerKind
from simonsca.models.served.forcing import plan_forcing
from simonsca.models.served.model import SERVER_CHAT_PREFIX, ServedModel
from simonsca.models.served.opening import default_concurrency, open_served_model
from simonsca.models.served.support import SUPPORT, ServerSupport, support_table
from simonsca.models.served.url import is_model_url, parse_model_url

__all__ = [
    "SERVER_CHAT_PREFIX",
    "SUPPORT",
    "HttpClient",
    "ScoringUnsupported",
    "ServedModel",
    "ServerError",
    "ServerFacts",
    "ServerKind",
    "ServerSupport",
    "default_concurrency",
    "describe_server",
    "detect_kind",
    "is_model_url",
    "open_served_model",
    "parse_model_url",
    "plan_forcing",
    "support_table",
]
