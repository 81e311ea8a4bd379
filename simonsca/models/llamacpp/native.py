"""llama-cpp-python's ctypes bindings, imported on first use, and llama.cpp's log: kept in a
buffer and quoted in errors (:func:`reason`) instead of written to the user's terminal."""

from __future__ import annotations

import contextlib
import ctypes
import re
from collections import deque
from collections.abc import Iterator, Sequence
from typing import Any

from simonsca.errors import ModelFileError


class _LlamaLog:
    """Receives llama.cpp's log lines (instead of stderr); the last few are kept for errors."""

    def __init__(self) -> None:
        self.lines: deque[str] = deque(maxlen=400)
        self._partial = ""
        self._callback: Any = None
        self._llama_cpp: Any = None

    def install(self, llama_cpp: Any) -> None:
        """Point llama.cpp's log at this buffer. Done again before every call that may log:
        llama-cpp-python points it at stderr whenever its ``_logger`` module is (re)imported."""
        if self._callback is None:

            @llama_cpp.llama_log_callback
            def callback(level: int, text: bytes, user_data: ctypes.c_void_p) -> None:
                self._partial += text.decode("utf-8", errors="replace")
                *done, self._partial = self._partial.split("\n")
                self.lines.extend(line for line in done if line.strip())

            self._callback = callback  # keep a reference: llama.cpp holds only the pointer
        self._llama_cpp = llama_cpp
        llama_cpp.llama_log_set(self._callback, ctypes.c_void_p(0))

    @contextlib.contextmanager
    def capture(self) -> Iterator[list[str]]:
        """Yields a list that holds the lines logged inside the block once it ends."""
        if self._llama_cpp is not None:
            self._llama_cpp.llama_log_set(self._callback, ctypes.c_void_p(0))
        self.lines.clear()
        self._partial = ""
        box: list[str] = []
        try:
            yield box
        finally:
            box.extend(self.lines)
            if self._partial.strip():
                box.append(self._partial)


LOG = _LlamaLog()


def bindings() -> Any:
    """llama-cpp-python's ctypes bindings, imported on first use, with the log redirected."""
    try:
        import llama_cpp
    except ImportError as error:  # pragma: no cover - a dependency
        raise ModelFileError(
            f"llama-cpp-python cannot be imported ({error}); reinstall it (see the README)"
        ) from None
    LOG.install(llama_cpp)
    return llama_cpp


def reason(lines: Sequence[str], default: str) -> str:
    """The most telling line of llama.cpp's log: its cause, not its summary.

    llama.cpp logs the cause first ("llama_model_load: error loading model: unknown model
    architecture: 'zzyzx'") and a summary last ("...: failed to load model"), so the last line
    that says "error" wins over the last that says "failed", and that over the last line. The
    function names and the "error loading model" prefix are dropped."""
    errors = [line for line in lines if "error" in line.lower()]
    failures = [line for line in lines if "failed" in line.lower()]
    pick = (errors or failures or list(lines) or [default])[-1].strip()
    pick = _FUNCTION_PREFIX.sub("", pick)
    pick = re.sub(r"^error (?:loading model|loading model hyperparameters)?:\s*", "", pick)
    return pick[:300] or default


#: "llama_model_load: " / "llama_model_load_from_file_impl: " at the start of a log line.
_FUNCTION_PREFIX = re.compile(r"^(?:[A-Za-z_][A-Za-z0-9_]*: )+")


def gpu_offload_supported() -> bool:
    """Whether this llama.cpp build can offload layers to a GPU (CUDA, Metal, Vulkan, ...)."""
    return bool(bindings().llama_supports_gpu_offload())


def default_gpu_layers() -> int:
    """All layers (-1) where the build can offload to a GPU, otherwise none (0)."""
    return -1 if gpu_offload_supported() else 0
