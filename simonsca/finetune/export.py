"""PEFT adapter -> GGUF LoRA adapter that llama.cpp / llama-cpp-python apply.

llama.cpp's own ``convert_lora_to_gguf.py`` does the conversion (tensor renaming, transposes,
the ``adapter.lora.alpha`` key). It ships inside the llama-cpp-python *source distribution*
(``vendor/llama.cpp/`` with its ``conversion/`` and ``gguf-py/`` folders). We get that sdist
from the package index through pip (``pip download --no-binary :all:``), or use a folder the user
names, and never touch a model hub: the converter is given ``--base`` with a folder that holds
only the base model's ``config.json``.
"""

from __future__ import annotations

import importlib.metadata
import os
import subprocess
import sys
import tarfile
from pathlib import Path

from simonsca.errors import ModelFileError

DEFAULT_LLAMA_CPP_PYTHON = "0.3.36"
CONVERTER = "convert_lora_to_gguf.py"
_NEEDED = (CONVERTER, "conversion/", "gguf-py/")


def llama_cpp_python_version() -> str:
    """The installed llama-cpp-python version (the one that will apply the adapter), else the pin."""
    try:
        return importlib.metadata.version("llama-cpp-python")
    except importlib.metadata.PackageNotFoundError:
        return DEFAULT_LLAMA_CPP_PYTHON


def _cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "simonsca" / "llama-cpp-src"


def find_converter(llama_cpp_dir: str | Path | None = None, version: str | None = None) -> Path:
    """Path of ``convert_lora_to_gguf.py`` in a llama.cpp tree, fetching the sdist if needed.

    Order: the folder given (or ``$SIMONSCA_LLAMA_CPP_DIR``); a previous extraction in
    ``~/.cache/simonsca/llama-cpp-src/<version>``; otherwise ``pip download`` of the
    llama-cpp-python sdist (served from pip's cache when it is there) and extraction of just the
    converter, ``conversion/`` and ``gguf-py/``.
    """
    given = llama_cpp_dir or os.environ.get("SIMONSCA_LLAMA_CPP_DIR")
    if given:
        script = Path(given) / CONVERTER
        if not script.is_file():
            raise ModelFileError(
                f"{script} not found: point --llama-cpp-dir at a llama.cpp source tree "
                "(e.g. llama_cpp_python-X/vendor/llama.cpp)"
            )
        return script
    version = version or llama_cpp_python_version()
    target = _cache_root() / version
    script = target / CONVERTER
    if script.is_file():
        return script
    download = target.parent / f"sdist-{version}"
    download.mkdir(parents=True, exist_ok=True)
    sdists = list(download.glob("llama_cpp_python-*.tar.gz"))
    if not sdists:
        print(f"[finetune] fetching the llama-cpp-python=={version} sdist through pip", flush=True)
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--no-deps",
                "--no-binary",
                ":all:",
                "-d",
                str(download),
                f"llama-cpp-python=={version}",
            ],
            check=True,
        )
        sdists = list(download.glob("llama_cpp_python-*.tar.gz"))
    if not sdists:
        raise ModelFileError(f"pip did not leave a llama-cpp-python sdist in {download}")
    _extract_converter(sdists[0], target)
    if not script.is_file():
        raise ModelFileError(f"{sdists[0]} has no vendor/llama.cpp/{CONVERTER}")
    return script


def _extract_converter(sdist: Path, target: Path) -> None:
    with tarfile.open(sdist) as archive:
        members = []
        for member in archive.getmembers():
            parts = member.name.split("/vendor/llama.cpp/", 1)
            if len(parts) != 2 or not parts[1].startswith(_NEEDED):
                continue
            member.name = parts[1]
            members.append(member)
        target.mkdir(parents=True, exist_ok=True)
        archive.extractall(target, members=members, filter="data")


def save_base_config(model: object, folder: Path) -> Path:
    """Write the base model's ``config.json`` as the converter needs it.

    A config loaded from a GGUF file has no ``architectures`` and carries
    ``quantization_config = {"quant_method": "gguf"}``, which the converter refuses; the LoRA
    tensors themselves are plain floats, so both are fixed up here.
    """
    import json

    config = model.config.to_dict()  # type: ignore[attr-defined]
    config.pop("quantization_config", None)
    if not config.get("architectures"):
        config["architectures"] = [type(model).__name__]
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "config.json"
    path.write_text(json.dumps(config, indent=1, default=str))
    return path


def convert_adapter(
    peft_dir: Path, base_config_dir: Path, outfile: Path, converter: Path, outtype: str = "f16"
) -> None:
    """Run llama.cpp's converter on a saved PEFT adapter; raises ModelFileError on failure."""
    cmd = [
        sys.executable,
        str(converter),
        "--base",
        str(base_config_dir),
        "--outtype",
        outtype,
        "--outfile",
        str(outfile),
        str(peft_dir),
    ]
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if result.returncode != 0 or not outfile.is_file():
        raise ModelFileError(
            f"{converter.name} failed on {peft_dir} (exit {result.returncode}):\n"
            + result.stderr[-3000:]
        )
