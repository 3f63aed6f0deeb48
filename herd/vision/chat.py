"""A trained vision model as a folder, and answering questions about an image with it (`herd chat --image`).

Folder layout: `vision.json` (the frozen language model and tokenizer it was trained on, the encoder
config, cross-attention positions, the prompt format) and `adapter.safetensors` (every tensor but the
text model's, which is loaded from `lm`: the adapter is what the recipe trains [P §7.4]).
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from herd.vision.adapter import VisionLanguageModel
from herd.vision.config import EncoderConfig, VisionConfig
from herd.vision.tiling import tile_image

PROMPT = "Question: {question}\nAnswer:"  # the SFT format (herd.vision.train)
FORMAT = "herd-vision-1"


def save_vision_model(model: VisionLanguageModel, cfg: Any, out: Path, tokenizer: str | None = None) -> Path:
    """Write `out/vision.json` + `out/adapter.safetensors`; `cfg` needs `.lm` (a bundled name or a path)."""
    from safetensors.torch import save_file

    out.mkdir(parents=True, exist_ok=True)
    meta = {
        "format": FORMAT,
        "lm": str(cfg.lm),
        "tokenizer": str(tokenizer or cfg.lm),
        "encoder": asdict(model.cfg.encoder),
        "cross_layers": list(model.cfg.cross_layers),
        "n_extra_tokens": model.cfg.n_extra_tokens,
        "prompt": PROMPT,
    }
    adapter = {k: v.detach().contiguous() for k, v in model.state_dict().items() if not k.startswith("text.")}
    save_file(adapter, str(out / "adapter.safetensors"))
    (out / "vision.json").write_text(json.dumps(meta, indent=2) + "\n")
    return out


def load_vision_model(folder: str | Path) -> tuple[VisionLanguageModel, Any, dict[str, Any]]:
    """(model, tokenizer, meta) from a folder written by `save_vision_model`; errors name the file."""
    from safetensors.torch import load_file

    from herd.model import load_model
    from herd.tokenizer import load_tokenizer

    folder = Path(folder)
    path = folder / "vision.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not found (not a herd vision model folder)")
    meta = json.loads(path.read_text())
    for key in ("lm", "tokenizer", "encoder", "cross_layers", "n_extra_tokens"):
        if key not in meta:
            raise ValueError(f"{path}: missing field '{key}'")
    enc = meta["encoder"]
    encoder = EncoderConfig(**{**enc, "taps": tuple(enc["taps"])})
    text = load_model(meta["lm"])
    cfg = VisionConfig(encoder=encoder, text=text.cfg, cross_layers=tuple(meta["cross_layers"]),
                       n_extra_tokens=meta["n_extra_tokens"])  # fmt: skip
    model = VisionLanguageModel(cfg, text=text)
    missing, unexpected = model.load_state_dict(load_file(str(folder / "adapter.safetensors")), strict=False)
    lost = [k for k in missing if not k.startswith("text.")]
    if lost or unexpected:
        raise ValueError(f"{folder / 'adapter.safetensors'}: missing {lost[:3]} unexpected {unexpected[:3]}")
    return model.eval(), load_tokenizer(meta["tokenizer"]), meta


def encode_image(model: VisionLanguageModel, file: str | Path) -> tuple[torch.Tensor, int]:
    """A PNG/JPEG file → (projected image tokens (1, max_tiles·P, dim), real tiles), tiled as in training."""
    from PIL import Image, UnidentifiedImageError

    try:
        image = Image.open(file).convert("RGB")
    except (FileNotFoundError, UnidentifiedImageError) as e:
        raise ValueError(f"{file}: not a readable image ({type(e).__name__})") from None
    enc = model.cfg.encoder
    tiled = tile_image(image, tile=enc.image_size, max_num_tiles=enc.max_num_tiles)
    pixels = torch.zeros(1, 1, enc.max_num_tiles, *tiled.tiles.shape[1:])
    pixels[0, 0, : len(tiled.tiles)] = tiled.tiles
    mask = torch.zeros(1, 1, enc.max_num_tiles, dtype=torch.long)
    mask[0, 0, : len(tiled.tiles)] = 1
    with torch.no_grad():
        return model.encode_images(pixels, torch.tensor([[tiled.aspect_ratio_id]]), mask), len(tiled.tiles)


@torch.no_grad()
def answer(model: VisionLanguageModel, tok: Any, image: tuple[torch.Tensor, int], question: str,
           max_new_tokens: int = 16, prompt: str = PROMPT) -> str:  # fmt: skip
    """Greedy answer to `question` about an `encode_image` result; stops at a newline or a stop token."""
    ids = [model.cfg.image_token_id, *tok.encode(prompt.format(question=question))]
    feats, n_real = image
    n_tiles = model.cfg.encoder.max_num_tiles
    stops = set(getattr(tok, "stop_ids", ()) or ())
    out: list[int] = []
    for _ in range(max_new_tokens):
        tokens = torch.tensor([ids + out])
        cross = torch.zeros(1, tokens.shape[1], 1, n_tiles, dtype=torch.long)
        cross[..., :n_real] = 1  # <|image|> is first: every token sees the image's real tiles
        nxt = int(model(tokens, feats, cross)[0, -1].argmax())
        if nxt in stops or "\n" in tok.decode([nxt]):
            break
        out.append(nxt)
    return tok.decode(out).strip()


def image_chat(folder: str | Path, image_file: str | Path, messages: list[str] | None = None,
               max_new_tokens: int = 16) -> int:  # fmt: skip
    """Answer questions about one image: `messages`, else lines from stdin until /exit or end of input."""
    import sys

    model, tok, meta = load_vision_model(folder)
    image = encode_image(model, image_file)
    prompt = meta.get("prompt", PROMPT)

    def reply(text: str) -> None:
        print(f"assistant> {answer(model, tok, image, text, max_new_tokens, prompt)}", flush=True)

    if messages:
        for text in messages:
            print(f"user> {text}")
            reply(text)
        return 0
    for line in sys.stdin:
        text = line.strip()
        if text == "/exit":
            break
        if text:
            reply(text)
    return 0
