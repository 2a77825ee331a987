"""GGUF models converted once into the model cache, then loaded like any local model.

transformers reads a GGUF file (``gguf_file=``, with the ``gguf`` package) and dequantizes
it into a plain model, but that model remembers its GGUF origin and refuses
``save_pretrained``, and every load dequantizes again (~30 s for 135M parameters). So the
first use copies its weights into a fresh model of the same configuration and saves it,
with the tokenizer and its chat template, as an ordinary model folder (fp32 safetensors).
Everything downstream (LoRA, QLoRA, vLLM, merging) then sees a normal local model. The
cache entry is keyed by the file's sha256, so another file, or a changed one, converts anew.
"""

from __future__ import annotations

import functools
import hashlib
import json
from pathlib import Path
from typing import Any

import torch

from codealign.cache import BuildClock, ensure_built, model_dir, say
from codealign.models.named import gguf_source
from codealign.settings.catalog import NAMED_MODELS

#: Bump when the conversion below changes what gets written.
CONVERTER_VERSION = 1
#: What the cache folder holds besides the model: where it came from.
SOURCE_FILE = "codealign_source.json"


@functools.lru_cache(maxsize=8)
def _sha256(path: str, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def file_sha256(path: Path) -> str:
    """The file's sha256, hashed once per process for an unchanged file."""
    stat = path.stat()
    return _sha256(str(path), stat.st_size, stat.st_mtime_ns)


def cache_name(name: str, source: Path) -> str:
    """The cache entry of ``model.name`` converted from ``source``: its name, or the
    file's stem, then a key of the file's contents and the converter's version."""
    stem = name if name in NAMED_MODELS else source.stem.lower().replace(" ", "-")
    key = hashlib.sha256(f"{file_sha256(source)}:{CONVERTER_VERSION}".encode()).hexdigest()
    return f"{stem}-{key[:16]}"


def ensure_gguf_model(name: str, *, log: Any = say) -> Path:
    """The converted model folder of ``name`` (a named model or a ``.gguf`` path),
    converting it first if this file has not been converted on this machine."""
    source = gguf_source(name)
    target = model_dir(cache_name(name, source))

    def build(out: Path) -> None:
        megabytes = source.stat().st_size / 2**20
        if log is not None:
            log(
                f"codealign: first use of {name}: converting {source.name} ({megabytes:.0f} MB "
                "GGUF) into a transformers model, about a minute on 2 CPU cores. Cached in "
                f"{target}, so later runs load it directly."
            )
        clock = BuildClock()
        convert_gguf(source, out, clock=clock)
        if log is not None:
            log(f"codealign: {name} converted in {clock.summary()}")

    return ensure_built(target, "config.json", build, log=log)


def convert_gguf(source: Path, out: Path, *, clock: BuildClock | None = None) -> None:
    """Write ``source`` (a GGUF file) to ``out`` as a transformers model folder: fp32
    weights dequantized, configuration, generation configuration and tokenizer."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    clock = clock or BuildClock()
    where, file = str(source.parent), source.name
    with clock.phase("dequantizing"):
        loaded = AutoModelForCausalLM.from_pretrained(where, gguf_file=file, dtype=torch.float32)
        tokenizer = AutoTokenizer.from_pretrained(where, gguf_file=file)
    with clock.phase("copying"):
        config = loaded.config
        # The GGUF marker is what makes transformers refuse to save: a plain model has none.
        if hasattr(config, "quantization_config"):
            del config.quantization_config
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)  # type: ignore[no-untyped-call]
        model.load_state_dict(loaded.state_dict(), strict=True)
        model.generation_config = loaded.generation_config
    with clock.phase("saving"):
        model.save_pretrained(out)
        tokenizer.save_pretrained(out)
        origin = {
            "gguf": file,
            "sha256": file_sha256(source),
            "converter_version": CONVERTER_VERSION,
        }
        (out / SOURCE_FILE).write_text(json.dumps(origin, indent=1) + "\n", "utf-8")
