"""A trained speech model folder (herd.speech.train's output) answering a spoken prompt [P §8].

    model, tok = load_speech_model("runs/speech/tiny/model")
    respond(model, tok, "question.wav")                      # "Repeat after me in English:" → transcript
    respond(model, tok, "question.wav", prompt="")           # spoken dialogue layout: the answer

The folder holds encoder.safetensors, adapter.safetensors, speech_config.json and, for the tiny LM, lm/
(a herd model folder with its tokenizer); any other frozen LM is loaded from the path the config names.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from herd.speech.adapter import SpeechLM
from herd.speech.data import ASR_PROMPT
from herd.speech.frontend import SAMPLE_RATE, LogMel
from herd.speech.train import SpeechTrainConfig, build_speech_model, end_of_turn, pad_features


def load_speech_model(folder: str | Path) -> tuple[SpeechLM, Any]:
    """The SpeechLM (frozen LM, trained encoder and adapter) and the LM's tokenizer, in eval mode."""
    from safetensors.torch import load_file

    from herd.core.config import from_dict
    from herd.model import load_model
    from herd.tokenizer import load_tokenizer

    folder = Path(folder)
    path = folder / "speech_config.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not a trained speech model folder (run `herd speech train` first)")
    cfg = from_dict(SpeechTrainConfig, json.loads(path.read_text()), where=str(path))
    lm_path = folder / "lm" if cfg.lm == "tiny" else cfg.lm
    lm = load_model(lm_path).eval()
    model = build_speech_model(cfg, lm)
    model.encoder.load_state_dict(load_file(folder / "encoder.safetensors"))
    model.adapter.load_state_dict(load_file(folder / "adapter.safetensors"))
    return model.eval(), load_tokenizer(lm_path)


def read_wav(path: str | Path) -> torch.Tensor:
    """Mono float32 samples at 16 kHz; other rates and channel counts fail naming the file."""
    import soundfile as sf

    try:
        wav, sr = sf.read(str(path), dtype="float32", always_2d=True)
    except (RuntimeError, sf.LibsndfileError) as e:
        raise ValueError(f"{path}: not a readable audio file ({e})") from None
    if sr != SAMPLE_RATE:
        raise ValueError(f"{path}: sample rate {sr} Hz; the speech encoder needs {SAMPLE_RATE} Hz")
    return torch.from_numpy(wav.mean(axis=1))


@torch.no_grad()
def respond(model: SpeechLM, tok: Any, audio: str | Path | torch.Tensor, prompt: str | None = None,
            max_new_tokens: int = 40) -> str:  # fmt: skip
    """The model's greedy reply to one utterance; `prompt` None is the paper's ASR prompt in English."""
    wav = read_wav(audio) if not isinstance(audio, torch.Tensor) else audio
    feats = LogMel()(wav[None])
    x, n = pad_features([feats[0]])
    text = ASR_PROMPT.format(language="English") if prompt is None else prompt
    prefix = tok.encode(text, bos=True) if text else [tok.bos_id]
    ids = model.transcribe([prefix], x, n, [[]], max_new_tokens=max_new_tokens, stop_ids=[end_of_turn(tok)])
    return tok.decode(ids[0]).strip()
