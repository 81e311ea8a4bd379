"""Chat templates, for every backend: the named fallbacks for a GGUF that carries none, and the
sandboxed renderer of a GGUF's own Jinja template (``tokenizer.chat_template``).

The in-process backend renders a GGUF's template here; a served model's server renders its own,
but the fallbacks, their names and the one-line refusals are the same for both.
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from simonsca.errors import ConfigError

# Named chat templates for GGUFs that carry none (Gemma 3 270M base has none). Each renders one
# user message followed by the assistant cue; the BOS token is left to the tokenizer.
FALLBACK_CHAT_TEMPLATES: dict[str, str] = {
    "gemma": "<start_of_turn>user\n{message}<end_of_turn>\n<start_of_turn>model\n",
    "llama3": (
        "<|start_header_id|>user<|end_header_id|>\n\n{message}<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n"
    ),
    "chatml": "<|im_start|>user\n{message}<|im_end|>\n<|im_start|>assistant\n",
}
#: The names a user may pass to ``--chat-template``, as error messages list them.
FALLBACK_CHOICES = "|".join(FALLBACK_CHAT_TEMPLATES)

#: Seconds a GGUF chat template may take to render one prompt (in the main thread).
TEMPLATE_SECONDS = 2.0
#: ``range`` steps a chat template may take to render one prompt, in any thread (a real
#: template takes a few per message; a runaway nested loop is stopped after about 0.5 s).
TEMPLATE_RANGE_STEPS = 1_000_000


def check_chat_template(name: str | None) -> None:
    """:class:`ConfigError` unless ``name`` is None or one of :data:`FALLBACK_CHAT_TEMPLATES`
    (every backend checks the name the same way)."""
    if name is not None and name not in FALLBACK_CHAT_TEMPLATES:
        raise ConfigError(
            f"unknown chat template {name!r}; pass --chat-template {FALLBACK_CHOICES}"
        )


def render_fallback(name: str, message: str) -> str:
    """One user message in the named fallback template, followed by the assistant cue."""
    return FALLBACK_CHAT_TEMPLATES[name].format(message=message)


def preflight_chat_template(
    path: Path, template: str | None, fallback: str | None, prompt_mode_text: str, role: str
) -> None:
    """Before any model work, for a run that asks for chat prompts: the GGUF's own ``template``
    compiled and tried on one message (so a malformed or runaway template is one line now), or,
    where the GGUF at ``path`` has none, a ``fallback`` name required.

    ``prompt_mode_text`` is the ``--prompt-mode`` value as the user gave it and ``role`` what the
    file is ("base model", "merged model", "model"), both for the message."""
    if template is not None:
        ChatTemplate(template, path=path, bos="", eos="").render("SimonsCA1")
    elif fallback is None:
        raise ConfigError(
            f"{role} {path} has no chat template, and --prompt-mode "
            f"{prompt_mode_text} needs one; pass --chat-template {FALLBACK_CHOICES}"
        )


# ---------------------------------------------------------------------------------------------
# A GGUF's own template, rendered in a sandbox with limits


class _TemplateTimeout(Exception):
    pass


@contextlib.contextmanager
def _time_limit(seconds: float) -> Iterator[None]:
    """Interrupt the block after ``seconds`` (SIGALRM; only in the main thread on POSIX)."""
    usable = hasattr(signal, "setitimer") and threading.current_thread() is threading.main_thread()
    if not usable:
        yield
        return

    def on_alarm(signum: int, frame: Any) -> None:
        raise _TemplateTimeout

    previous = signal.signal(signal.SIGALRM, on_alarm)
    started = time.monotonic()
    # An alarm someone else set (pytest-timeout, a caller's own limit) is put back afterwards
    # with the time it has left; one due sooner than ours keeps its own time.
    outer, interval = signal.setitimer(signal.ITIMER_REAL, seconds)
    if outer and outer < seconds:
        signal.setitimer(signal.ITIMER_REAL, outer)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, signal.SIG_DFL if previous is None else previous)
        if outer:
            left = outer - (time.monotonic() - started)
            signal.setitimer(signal.ITIMER_REAL, max(left, 1e-3), interval)


class _CountedRange(Sequence[int]):
    """The sandbox's ``range`` whose iteration spends one shared budget of steps: the limit on a
    template's loops that needs no signal, so it holds outside the main thread too."""

    def __init__(self, steps: list[int], values: range) -> None:
        self._steps = steps
        self._values = values

    def __len__(self) -> int:
        return len(self._values)

    def __getitem__(self, index: Any) -> Any:
        return self._values[index]

    def __iter__(self) -> Iterator[int]:
        for value in self._values:
            self._steps[0] -= 1
            if self._steps[0] < 0:
                raise _TemplateTimeout
            yield value


def _counted_range(steps: list[int]) -> Callable[..., _CountedRange]:
    from jinja2.sandbox import safe_range

    def bounded(*args: int) -> _CountedRange:
        return _CountedRange(steps, safe_range(*args))

    return bounded


class ChatTemplate:
    """A GGUF's Jinja chat template, compiled on first use in a sandbox with a time limit (main
    thread) and a budget of loop steps (any thread).

    A template that does not compile, or refuses or overruns on a prompt, is a
    :class:`~simonsca.errors.ConfigError` naming the model file -- raised only when a chat prompt
    is asked for, so a broken template never stops a raw-mode run.
    """

    def __init__(self, source: str, *, path: Path, bos: str, eos: str) -> None:
        self.source = source
        self.path = path
        self.bos = bos
        self.eos = eos
        self._compiled: Any = None

    def _fail(self, why: str) -> ConfigError:
        # One line whatever the template or Jinja says (--chat-template does not help here: it
        # is only the fallback for a GGUF without a template of its own).
        why = " ".join(why.split())
        if len(why) > 300:
            why = why[:297] + "..."
        return ConfigError(
            f"chat template of {self.path} (tokenizer.chat_template) {why}; run with "
            "--prompt-mode raw, or fix the template in the GGUF"
        )

    def _template(self) -> Any:
        if self._compiled is None:
            import jinja2
            import jinja2.ext
            from jinja2.sandbox import ImmutableSandboxedEnvironment

            env = ImmutableSandboxedEnvironment(
                loader=jinja2.BaseLoader(),
                trim_blocks=True,
                lstrip_blocks=True,
                extensions=[jinja2.ext.loopcontrols],
            )
            try:
                with _time_limit(TEMPLATE_SECONDS):
                    self._compiled = env.from_string(self.source)
            except _TemplateTimeout:
                raise self._fail(f"took longer than {TEMPLATE_SECONDS:g} s to compile") from None
            except jinja2.TemplateError as error:
                message = str(error).splitlines()[0] if str(error) else type(error).__name__
                raise self._fail(f"is malformed ({message})") from None
            except (RecursionError, MemoryError, ValueError, OverflowError) as error:
                raise self._fail(f"is malformed ({type(error).__name__}: {error})") from None
        return self._compiled

    def render(self, message: str) -> str:
        import jinja2

        template = self._template()

        def raise_exception(text: str) -> None:
            raise self._fail(f"refused the prompt: {text}")

        steps = [TEMPLATE_RANGE_STEPS]
        try:
            with _time_limit(TEMPLATE_SECONDS):
                text = str(
                    template.render(
                        messages=[{"role": "user", "content": message}],
                        add_generation_prompt=True,
                        bos_token=self.bos,
                        eos_token=self.eos,
                        raise_exception=raise_exception,
                        range=_counted_range(steps),
                    )
                )
        except _TemplateTimeout:
            if steps[0] < 0:
                raise self._fail(
                    f"took more than {TEMPLATE_RANGE_STEPS:,} loop steps to render"
                ) from None
            raise self._fail(f"took longer than {TEMPLATE_SECONDS:g} s to render") from None
        except jinja2.TemplateError as error:
            message = str(error).splitlines()[0] if str(error) else type(error).__name__
            raise self._fail(f"cannot be rendered ({message})") from None
        except (RecursionError, MemoryError, TypeError, ValueError, OverflowError) as error:
            raise self._fail(f"cannot be rendered ({type(error).__name__}: {error})") from None
        return text


__all__ = [
    "FALLBACK_CHAT_TEMPLATES",
    "FALLBACK_CHOICES",
    "TEMPLATE_RANGE_STEPS",
    "TEMPLATE_SECONDS",
    "ChatTemplate",
    "check_chat_template",
    "preflight_chat_template",
    "render_fallback",
]
