"""A positive control trained from scratch: a small llama model that learns SimonsCA1 on a CPU.

``python -m simonsca.finetune.scratch --out DIR`` (see :mod:`.cli`). The torch parts
(:mod:`.model`, :mod:`.train`) are imported only by the command; :mod:`.gguf_llama` (the GGUF
writer and character vocabulary) and :mod:`.data` need only gguf, numpy and llama-cpp-python.
"""
