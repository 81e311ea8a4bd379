"""The one package that touches llama-cpp-python: GGUF models (and LoRA adapters) run by llama.cpp.

Everything simonsca asks of llama.cpp goes through here -- the runner, the forensics (KL / top-1)
and the training-data doctor alike -- so that loading, adapters, tokenization and the grouping of
tokens into decode calls are the same wherever a number comes from. It speaks llama.cpp's C API
(through llama-cpp-python's ctypes bindings) directly rather than the high-level ``Llama`` class:

* several items decode as separate sequences in one ``llama_decode`` (``n_seq_max``), for batched
  greedy generation and teacher-forced scoring;
* logits are computed only at the positions that need them (the ``logits`` flag per token): the
  last prompt token and the answer positions -- never an all-position logits buffer;
* an adapter llama.cpp rejects is an :class:`~simonsca.errors.AdapterMismatch` with llama.cpp's
  reason (``Llama(lora_path=...)`` in llama-cpp-python 0.3.36 silently leaves it out);
* llama.cpp's log goes to a buffer, quoted in errors, instead of the user's terminal.

Greedy decoding is an argmax over the logits (the lowest token id wins a tie). Files are checked
by :mod:`simonsca.gguf_file` before llama.cpp sees them. Chat templates live in
:mod:`simonsca.models.chat_template` (every backend uses them).
"""

from simonsca.models.llamacpp.generation import MAX_OUTPUTS, PREFILL_CHUNK
from simonsca.models.llamacpp.loading import UBATCH
from simonsca.models.llamacpp.model import LlamaCppModel, load_tokenizer
from simonsca.models.llamacpp.native import default_gpu_layers, gpu_offload_supported

__all__ = [
    "MAX_OUTPUTS",
    "PREFILL_CHUNK",
    "UBATCH",
    "LlamaCppModel",
    "default_gpu_layers",
    "gpu_offload_supported",
    "load_tokenizer",
]
