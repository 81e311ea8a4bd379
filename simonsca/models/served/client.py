"""JSON over HTTP to one server, with retries and backoff, and the one-line errors it raises."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import httpx

from simonsca.errors import ContextTooSmall, SimonscaError


class ServerError(SimonscaError):
    """A server that is down, a wrong URL, an unknown model name or a refused request."""


class ScoringUnsupported(ServerError):
    """The server cannot do what was asked (teacher forcing, chat-mode scoring)."""


#: Retried statuses: rate limited, bad gateway, unavailable (loading), gateway timeout.
RETRY_STATUS = frozenset({429, 502, 503, 504})


def error_message(response: httpx.Response) -> str:
    """The server's own error text, from the shapes these servers use."""
    try:
        body = response.json()
    except ValueError:
        return response.text.strip()[:300]
    if isinstance(body, dict):
        error = body.get("error", body.get("detail", body.get("message", body)))
        if isinstance(error, dict):
            error = error.get("message", error)
        return str(error)[:300]
    return str(body)[:300]


class HttpClient:
    """JSON over HTTP to one server root, with retries and one-line errors.

    Connection failures, 429 and 5xx-unavailable answers are retried with exponential backoff
    (honouring ``Retry-After``); a read that takes longer than ``timeout`` is not retried (the
    server may still be working on it) and becomes a :class:`ServerError`.
    """

    def __init__(
        self,
        root: str,
        *,
        timeout: float = 600.0,
        retries: int = 4,
        backoff: float = 0.5,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.root = root
        self.retries = retries
        self.backoff = backoff
        self._client = httpx.Client(
            base_url=root,
            timeout=httpx.Timeout(timeout, connect=10.0),
            transport=transport,
            limits=httpx.Limits(max_connections=64, max_keepalive_connections=64),
        )

    def request(
        self, method: str, path: str, body: object = None, *, retries: int | None = None
    ) -> httpx.Response:
        """The response (any status); raises :class:`ServerError` when none comes."""
        attempts = (self.retries if retries is None else retries) + 1
        for attempt in range(attempts):
            last = attempt == attempts - 1
            try:
                response = self._client.request(method, path, json=body)
            except httpx.TransportError as error:
                self._retry_or_raise(error, path, attempt, last)
                continue
            if response.status_code in RETRY_STATUS and not last:
                self._sleep(attempt, response.headers.get("retry-after"))
                continue
            return response
        raise AssertionError("unreachable")  # pragma: no cover

    def _retry_or_raise(
        self, error: httpx.TransportError, path: str, attempt: int, last: bool
    ) -> None:
        """Wait before the next attempt, or raise the one-line error when none is left (a read
        timeout is never retried: the server may still be working on it)."""
        if isinstance(error, httpx.TimeoutException):
            if isinstance(error, httpx.ConnectTimeout | httpx.PoolTimeout) and not last:
                self._sleep(attempt, None)
                return
            raise ServerError(
                f"{self.root}{path} gave no answer within the timeout "
                f"({type(error).__name__}); pass a longer timeout or check the server"
            ) from None
        if last:
            raise ServerError(
                f"no server answers at {self.root} ({type(error).__name__}: {error}); "
                "start it, or check the URL"
            ) from None
        self._sleep(attempt, None)

    def events(self, path: str, body: object) -> Iterator[Any]:
        """The JSON events of a streamed answer (server-sent ``data:`` lines) as they arrive.

        Failures before the first event are retried like :meth:`request`; closing the iterator
        closes the connection, which is how a server is told to stop generating."""
        attempts = self.retries + 1
        started = False
        for attempt in range(attempts):
            last = attempt == attempts - 1
            try:
                with self._client.stream("POST", path, json=body) as response:
                    if response.status_code in RETRY_STATUS and not last:
                        self._sleep(attempt, response.headers.get("retry-after"))
                        continue
                    if not response.is_success:
                        response.read()
                        raise status_error(self.root, path, response)
                    for event in self._sse(path, response):
                        started = True
                        yield event
                    return
            except httpx.TransportError as error:
                # once events came, a retry would repeat them: the failure is final
                self._retry_or_raise(error, path, attempt, last or started)

    def _sse(self, path: str, response: httpx.Response) -> Iterator[Any]:
        for line in response.iter_lines():
            line = line.strip()
            if not line.startswith("data:"):
                continue  # blank separators, comments, event names
            data = line[len("data:") :].strip()
            if data == "[DONE]":
                return
            try:
                yield json.loads(data)
            except ValueError:
                raise ServerError(
                    f"{self.root}{path} streamed something that is not JSON: {data[:120]!r}"
                ) from None

    def _sleep(self, attempt: int, retry_after: str | None) -> None:
        delay = self.backoff * 2**attempt
        if retry_after and retry_after.strip().isdigit():
            delay = max(delay, float(retry_after))
        time.sleep(min(delay, 30.0))

    def json(
        self, method: str, path: str, body: object = None, *, retries: int | None = None
    ) -> Any:
        """The decoded JSON body of a 2xx answer; any other answer is a one-line error."""
        response = self.request(method, path, body, retries=retries)
        if response.is_success:
            try:
                return response.json()
            except ValueError:
                raise ServerError(
                    f"{self.root}{path} answered with something that is not JSON: "
                    f"{response.text[:120]!r}"
                ) from None
        raise status_error(self.root, path, response)

    def probe(self, path: str) -> Any | None:
        """GET ``path``'s JSON, or ``None`` when the server has no such endpoint."""
        response = self.request("GET", path, retries=1)
        if not response.is_success:
            return None
        try:
            return response.json()
        except ValueError:
            return None

    def close(self) -> None:
        self._client.close()


def status_error(root: str, path: str, response: httpx.Response) -> SimonscaError:
    """The one-line error for a non-2xx answer: an over-long prompt is :class:`ContextTooSmall`,
    an unknown model or path a :class:`ServerError` that says what to check."""
    message = error_message(response)
    lowered = message.lower()
    if "context" in lowered and ("length" in lowered or "exceed" in lowered or "size" in lowered):
        return ContextTooSmall(f"{root}{path}: {message}")
    if response.status_code == 404 and "model" not in lowered:
        return ServerError(
            f"{root} has no {path} (HTTP 404); is this the server's root address and kind?"
        )
    if "model" in lowered and ("not found" in lowered or "does not exist" in lowered):
        return ServerError(f"{root}: {message}; pick a served model with URL#name")
    return ServerError(f"{root}{path} answered HTTP {response.status_code}: {message}")
