"""The recipe's `speech` stage: the espeak-ng speech data, then BEST-RQ pre-training and adapter + encoder SFT
with a frozen LM, ending in WER on held-out sentences and voices [P §8].

Two stage folders under the run: `speech/data` (herd.speech.data) and `speech/model` (herd.speech.train,
whose manifest counts carry the WERs with 95% CIs that the report prints). `lm = "chat"` freezes the
recipe's own post-trained model, as the paper does with Llama 3; the default keeps the speech config's LM
(the tiny text LM trained on the speech transcripts), which fits a CPU budget.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from herd.speech.data import load_speech_data_config, run_speech_data
from herd.speech.train import load_speech_train_config, run_speech_train


@dataclass
class RecipeSpeechSection:
    enabled: bool = False
    data: str = "configs/speech/tiny.toml"  # herd.speech.data config
    train: str = "configs/speech/train_tiny.toml"  # herd.speech.train config
    lm: str = ""  # "" = the train config's LM; "chat" = the recipe's post-trained model, frozen
    # Dotted overrides of either config, prefixed by its name: "data.max_sentences=8", "train.sft_steps=50".
    overrides: list[str] = field(default_factory=list)


def run_recipe_speech(section: RecipeSpeechSection, root: Path, chat_model: Path | None = None) -> dict[str, Any]:
    """Both stages (each skipped when finished under the same key); returns the training stage's counts."""
    data_over, train_over = _split(section.overrides)
    dcfg = load_speech_data_config(section.data, data_over)
    dcfg.out = str(root / "speech" / "data")
    tcfg = load_speech_train_config(section.train, train_over)
    tcfg.data, tcfg.out = dcfg.out, str(root / "speech" / "model")
    if section.lm == "chat":
        if chat_model is None:
            raise ValueError("speech.lm = 'chat' needs the recipe's post-trained model (run posttrain first)")
        tcfg.lm = str(chat_model)
    elif section.lm:
        tcfg.lm = section.lm
    run_speech_data(dcfg)
    return run_speech_train(tcfg).counts


def _split(overrides: list[str]) -> tuple[list[str], list[str]]:
    data, train = [], []
    for text in overrides:
        head, _, rest = text.partition(".")
        if head not in ("data", "train") or not rest:
            raise ValueError(f"speech.overrides: {text!r} must start with 'data.' or 'train.'")
        (data if head == "data" else train).append(rest)
    return data, train
