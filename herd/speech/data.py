"""The speech data stage: text → espeak-ng speech → ASR, AST and spoken-dialogue examples [P §8.3].

Sources are the bundled texts: chatterbot-corpus conversations (28 languages, PyPI) give sentences to
speak and, for spoken dialogue, a prompt and an answer; a sentence-aligned parallel JSONL (when the
config names one; no bundled package ships sentence-aligned parallel text) gives AST pairs. Each
sentence is spoken by espeak-ng voices drawn across variants, speaking rates, pitches and added noise.

Prompts are the paper's: `Repeat after me in {language}:` for ASR and `Translate the following sentence
into {language}:` for AST [P §8.3]. Spoken dialogue pairs a spoken user turn with a text answer, by
default the corpus's own answer or, with `dialogue_model`, the answer of a post-trained herd model.

Splits keep the evaluation honest: sentences are split by a hash of their text into train and test,
voice variants into trained and held-out. `test_sentences` holds test sentences in trained voices;
`test_voices` holds the same test sentences in voices never trained on.

Out: audio/*.flac (16 kHz), examples.jsonl (one row per utterance), dropped/dropped.jsonl (row + reason),
MANIFEST.json with in = kept + dropped by reason.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from herd.core.config import load_config
from herd.core.io import iter_jsonl
from herd.core.stage import run_fn

ASR_PROMPT = "Repeat after me in {language}:"  # [P §8.3]
AST_PROMPT = "Translate the following sentence into {language}:"  # [P §8.3]

# chatterbot-corpus folder → (espeak-ng voice, language name in prompts).
LANGUAGES: dict[str, tuple[str, str]] = {
    "english": ("en", "English"), "german": ("de", "German"), "spanish": ("es", "Spanish"),
    "french": ("fr", "French"), "italian": ("it", "Italian"), "portuguese": ("pt", "Portuguese"),
    "russian": ("ru", "Russian"), "dutch": ("nl", "Dutch"), "swedish": ("sv", "Swedish"),
    "turkish": ("tr", "Turkish"), "indonesian": ("id", "Indonesian"), "hindi": ("hi", "Hindi"),
}  # fmt: skip
CODE_TO_NAME = {code: name for code, name in LANGUAGES.values()}


@dataclass
class SpeechDataConfig:
    out: str = "runs/speech/data"
    languages: list[str] = field(default_factory=lambda: ["english"])
    max_sentences: int = 200  # per language, before the split
    min_words: int = 2
    max_words: int = 12
    max_seconds: float = 6.0
    # 0: any sentence. N: only sentences whose words are all among the N most frequent words of the language's
    # sentences (a smaller-vocabulary task: held-out sentences are new combinations of known words) [D].
    max_vocab: int = 0
    # 0: speak the corpus's sentences. N (with max_vocab): speak N strings of min_words..max_words words drawn
    # uniformly from those max_vocab words instead, so every test string is a new combination of trained words
    # and no string can be told from another by its sentence prior [D].
    word_strings: int = 0
    test_fraction: float = 0.15
    train_variants: list[str] = field(default_factory=lambda: ["m1", "m3", "f1", "f3"])
    heldout_variants: list[str] = field(default_factory=lambda: ["m7", "f4"])
    voices_per_sentence: int = 2  # train sentences: this many draws of (variant, rate, pitch, noise)
    rates: list[int] = field(default_factory=lambda: [150, 175, 200])
    pitches: list[int] = field(default_factory=lambda: [35, 50, 65])
    noise_prob: float = 0.3
    snr_db: list[float] = field(default_factory=lambda: [15.0, 30.0])
    parallel: str = ""  # sentence-aligned JSONL: source, target, source_language, target_language (codes)
    dialogue: int = 0  # spoken-dialogue examples per language (user turn spoken, answer as text)
    dialogue_model: str = ""  # "" = the corpus's answer; else a herd model (name or folder) answers
    sample_rate: int = 16_000
    seed: int = 0


@dataclass
class Candidate:
    """One piece of text to speak and what the model should answer."""

    task: str  # asr | ast | dialogue
    text: str  # what is spoken
    language: str  # espeak code of the spoken text
    target: str  # the text the model should produce
    target_language: str
    source: str  # where the text came from (file and index)


def corpus_root() -> Path:
    import importlib.util

    spec = importlib.util.find_spec("chatterbot_corpus")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("speech data needs `pip install chatterbot-corpus` (the bundled multilingual dialogs)")
    return Path(spec.submodule_search_locations[0]) / "data"


def read_conversations(folder: Path) -> Iterator[tuple[str, list[str]]]:
    """(file:index, turns) of every conversation in a chatterbot-corpus language folder."""
    import yaml

    for path in sorted(folder.glob("*.yml")):
        try:
            doc = yaml.safe_load(path.read_text(encoding="utf-8"))
        except yaml.YAMLError as e:
            raise ValueError(f"{path}: invalid YAML ({e})") from None
        for i, conv in enumerate((doc or {}).get("conversations") or []):
            if isinstance(conv, list):
                yield f"{path.parent.name}/{path.name}:{i}", [str(t) for t in conv if t is not None]


def text_hash(text: str) -> int:
    """A stable hash of the lowercased text: the train/test split of a sentence never changes between runs."""
    return int(hashlib.sha256(text.lower().encode()).hexdigest()[:8], 16)


def asr_candidates(cfg: SpeechDataConfig) -> Iterator[Candidate]:
    root = corpus_root()
    for folder in cfg.languages:
        if folder not in LANGUAGES:
            raise ValueError(f"speech data: languages: unknown '{folder}'; known: {', '.join(LANGUAGES)}")
        code, _ = LANGUAGES[folder]
        seen: set[str] = set()
        for where, turns in read_conversations(root / folder):
            for j, turn in enumerate(turns):
                text = " ".join(turn.split())
                if text.lower() in seen:
                    continue  # exact duplicates are common (every "Hello"): speak each once
                seen.add(text.lower())
                yield Candidate("asr", text, code, text, code, f"{where}:{j}")


def dialogue_candidates(cfg: SpeechDataConfig) -> Iterator[Candidate]:
    root = corpus_root()
    for folder in cfg.languages:
        code, _ = LANGUAGES[folder]
        n = 0
        for where, turns in read_conversations(root / folder):
            if len(turns) >= 2 and n < cfg.dialogue:
                n += 1
                yield Candidate("dialogue", turns[0], code, turns[1], code, where)


def ast_candidates(path: Path) -> Iterator[Candidate]:
    for lineno, row in iter_jsonl(path):
        missing = [k for k in ("source", "target", "source_language", "target_language") if not row.get(k)]
        if missing:
            raise ValueError(f"{path}:{lineno}: missing field {missing[0]!r}")
        yield Candidate("ast", str(row["source"]), str(row["source_language"]), str(row["target"]),
                        str(row["target_language"]), f"{path.name}:{lineno}")  # fmt: skip


def words_of(text: str) -> list[str]:
    """Lowercased words without punctuation (as WER counts them)."""
    return re.sub(r"[^\w\s']", " ", text.lower()).split()


def top_words(cfg: SpeechDataConfig) -> dict[str, set[str]]:
    """Per language, the `max_vocab` most frequent words over the sentences that pass `reject` (ties by word)."""
    counts: dict[str, Counter[str]] = {}
    for c in asr_candidates(cfg):
        if reject(c, cfg) is None:
            counts.setdefault(c.language, Counter()).update(words_of(c.text))
    return {lang: {w for w, _ in sorted(n.items(), key=lambda kv: (-kv[1], kv[0]))[: cfg.max_vocab]}
            for lang, n in counts.items()}  # fmt: skip


def reject(c: Candidate, cfg: SpeechDataConfig, vocab: dict[str, set[str]] | None = None) -> str | None:
    """A drop reason for text that should not be spoken, or None."""
    words = c.text.split()
    if c.language not in CODE_TO_NAME:
        return "unsupported_language"
    if not re.search(r"\w", c.text):
        return "no_words"
    if len(words) < cfg.min_words and c.task != "dialogue":
        return "too_few_words"
    if len(words) > cfg.max_words:
        return "too_many_words"
    if "http" in c.text or "<" in c.text or "```" in c.text:
        return "markup"  # URLs and code read out letter by letter
    if vocab is not None and c.task == "asr" and not set(words_of(c.text)) <= vocab.get(c.language, set()):
        return "rare_word"
    return None


def prompt_for(c: Candidate) -> str:
    if c.task == "asr":
        return ASR_PROMPT.format(language=CODE_TO_NAME[c.language])
    if c.task == "ast":
        return AST_PROMPT.format(language=CODE_TO_NAME.get(c.target_language, c.target_language))
    return ""  # spoken dialogue: the speech is the whole user turn


def build_speech_data(cfg: SpeechDataConfig, out: Path) -> dict[str, Any]:
    """Write audio/, examples.jsonl and dropped/dropped.jsonl into `out`; return the stage's counts."""
    import soundfile as sf

    from herd.speech.synth import Voice, add_noise, synthesize

    rng = random.Random(cfg.seed)
    nprng = np.random.default_rng(cfg.seed)
    (out / "audio").mkdir(parents=True, exist_ok=True)
    (out / "dropped").mkdir(parents=True, exist_ok=True)
    kept: list[dict[str, Any]] = []
    dropped: list[dict[str, Any]] = []
    n_in = n_kept = 0
    vocab = top_words(cfg) if cfg.max_vocab else None
    for c in _candidates(cfg, vocab):
        n_in += 1
        row = {"task": c.task, "text": c.text, "language": c.language, "source": c.source}
        reason = reject(c, cfg, vocab)
        if reason:
            dropped.append({**row, "reason": reason})
            continue
        test = text_hash(c.text) % 1000 < cfg.test_fraction * 1000
        if c.task == "dialogue" and cfg.dialogue_model:
            c.target = _model_answers(cfg, [c.text])[0]
        utterances = _voices(cfg, rng, test)
        made = []
        for split, variant in utterances:
            voice = Voice(c.language, variant, rng.choice(cfg.rates), rng.choice(cfg.pitches))
            wav = synthesize(c.text, voice, cfg.sample_rate)
            snr = None
            if rng.random() < cfg.noise_prob:
                snr = rng.uniform(*cfg.snr_db)
                wav = add_noise(wav, snr, nprng)
            seconds = len(wav) / cfg.sample_rate
            if seconds > cfg.max_seconds or len(wav) < cfg.sample_rate // 10:
                continue
            uid = hashlib.sha256(f"{c.task}|{c.text}|{voice.key()}|{snr}".encode()).hexdigest()[:16]
            if any(m["id"] == uid for m in made):
                continue  # the same draw twice would be one recording counted twice
            sf.write(out / "audio" / f"{uid}.flac", wav, cfg.sample_rate, subtype="PCM_16")
            made.append({"id": uid, "split": split, **row, "prompt": prompt_for(c), "target": c.target,
                         "target_language": c.target_language, "audio": f"audio/{uid}.flac",
                         "seconds": round(seconds, 3), "voice": voice.key(), "variant": variant or "default",
                         "rate": voice.rate, "pitch": voice.pitch, "snr_db": snr})  # fmt: skip
        if not made:
            dropped.append({**row, "reason": "too_long_spoken"})
            continue
        kept.extend(made)
        n_kept += 1
    _write_jsonl(out / "examples.jsonl", kept)
    _write_jsonl(out / "dropped" / "dropped.jsonl", dropped)
    return {
        "in": n_in,
        "kept": n_kept,
        "dropped": dict(sorted(Counter(r["reason"] for r in dropped).items())),
        "utterances": len(kept),
        "hours": round(sum(r["seconds"] for r in kept) / 3600, 4),
        "by_split": dict(sorted(Counter(r["split"] for r in kept).items())),
        "by_task": dict(sorted(Counter(r["task"] for r in kept).items())),
        "by_language": dict(sorted(Counter(r["language"] for r in kept).items())),
        "by_variant": dict(sorted(Counter(r["variant"] for r in kept).items())),
    }


def string_candidates(cfg: SpeechDataConfig, vocab: dict[str, set[str]]) -> Iterator[Candidate]:
    """`word_strings` random strings per language over its `max_vocab` most frequent words (seeded)."""
    rng = random.Random(f"{cfg.seed}:strings")
    for folder in cfg.languages:
        code, _ = LANGUAGES[folder]
        words = sorted(vocab.get(code, set()))
        seen: set[str] = set()
        for i in range(cfg.word_strings):
            text = " ".join(rng.choice(words) for _ in range(rng.randint(cfg.min_words, cfg.max_words)))
            if text not in seen:  # a repeat would be one string counted twice
                seen.add(text)
                yield Candidate("asr", text, code, text, code, f"strings:{i}")


def _candidates(cfg: SpeechDataConfig, vocab: dict[str, set[str]] | None = None) -> Iterator[Candidate]:
    per_language: Counter[str] = Counter()
    if cfg.word_strings and not cfg.max_vocab:
        raise ValueError("speech data: word_strings needs max_vocab (the words the strings are drawn from)")
    sentences = string_candidates(cfg, vocab or {}) if cfg.word_strings else asr_candidates(cfg)
    for c in sentences:
        if vocab is not None and reject(c, cfg, vocab) is not None:
            yield c  # dropped with its reason; with a word limit, max_sentences counts the sentences kept
            continue
        if per_language[c.language] < cfg.max_sentences:
            per_language[c.language] += 1
            yield c
    if cfg.parallel:
        path = Path(cfg.parallel)
        if not path.is_file():
            raise FileNotFoundError(f"speech data: parallel: no file {path}")
        yield from ast_candidates(path)
    if cfg.dialogue:
        yield from dialogue_candidates(cfg)


def _voices(cfg: SpeechDataConfig, rng: random.Random, test: bool) -> list[tuple[str, str]]:
    """(split, variant) per utterance: test sentences in every trained and every held-out variant."""
    if test:
        return [("test_sentences", v) for v in cfg.train_variants] + [("test_voices", v) for v in cfg.heldout_variants]
    return [("train", rng.choice(cfg.train_variants)) for _ in range(cfg.voices_per_sentence)]


def _model_answers(cfg: SpeechDataConfig, prompts: list[str]) -> list[str]:
    """The post-trained model's text answers (greedy) to the user turns [P §8.3 spoken dialogue]."""
    from herd.model import generate
    from herd.tokenizer import load_chat_format, load_tokenizer

    model = _cached_model(cfg.dialogue_model)
    tok = load_tokenizer(cfg.dialogue_model)
    chat = load_chat_format(tok)
    ids = [chat.encode_prompt([{"role": "user", "content": p}]) for p in prompts]
    out = generate(model, ids, max_new_tokens=48, stop_ids=sorted(tok.stop_ids))
    return [tok.decode(o).strip() for o in out]


_MODEL: dict[str, Any] = {}


def _cached_model(name: str) -> Any:
    from herd.model import load_model

    if name not in _MODEL:
        _MODEL[name] = load_model(name).eval()
    return _MODEL[name]


def _write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")


def read_examples(folder: str | Path, split: str | None = None, task: str | None = None) -> list[dict[str, Any]]:
    """The stage's rows (optionally one split or task), with `audio` made absolute."""
    folder = Path(folder)
    path = folder / "examples.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no speech data here (run `herd speech data` first)")
    rows = []
    for lineno, row in iter_jsonl(path):
        if "audio" not in row or "target" not in row:
            raise ValueError(f"{path}:{lineno}: a speech example needs 'audio' and 'target'")
        if (split is None or row["split"] == split) and (task is None or row["task"] == task):
            rows.append({**row, "audio": str(folder / row["audio"])})
    return rows


def run_speech_data(cfg: SpeechDataConfig) -> Any:
    """The stage: skipped when its manifest matches the config and inputs."""
    inputs = [Path(cfg.parallel)] if cfg.parallel else []
    return run_fn("speech_data", inputs, cfg, cfg.out, lambda tmp: build_speech_data(cfg, tmp))


def load_speech_data_config(path: str | Path | None, overrides: list[str] | tuple[str, ...] = ()) -> SpeechDataConfig:
    return load_config(SpeechDataConfig, path, overrides)
