"""A prosody model: per-phone duration and pitch (F0) from frozen LM embeddings [P §8 speech generation].

The paper's prosody model predicts phone durations and F0 from Llama 3 embeddings (layer 16 of 8B) of the
text. Here the targets come from espeak-ng: each phone's duration from its phoneme events, its F0 from the
synthesized audio by a YIN tracker written below (librosa is not a herd dependency). The model sees the LM
state of the phone's word and of the next word (a one-word lookahead, as TN), the phone and its neighbours,
and where the phone sits in its word and sentence; it is compared with the mean per phone (the baseline the
issue names) and with itself without the LM features (the ablation that says whether the LM helps).

Playback goes back through espeak-ng: SSML `<prosody rate pitch>` per word (the finest control its C API
offers; phoneme input has no per-phone duration), calibrated in closed loop so each word's spoken duration
meets the predicted one, and its phone events measured again.

    herd speech prosody configs/speech/prosody.toml
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from herd.core.config import load_config
from herd.core.logging import get_logger
from herd.core.stage import run_fn
from herd.speech.lmfeat import load_frozen_lm, paper_layer, word_states
from herd.speech.synth import _CALLBACK, Voice, engine
from herd.speech.verbalize import split_words

log = get_logger(__name__)

_SSML = 0x10  # speak_lib.h espeakSSML: the text is SSML
_CHARS_UTF8, _POS_CHARACTER = 1, 1
_EVENT_WORD, _EVENT_END, _EVENT_PHONEME = 1, 5, 7
F0_REF_HZ = 100.0  # cents are measured from here


# ---------------------------------------------------------------- espeak-ng with word events


def speak_events(
    text: str, voice: Voice, ssml: bool = False
) -> tuple[np.ndarray, int, list[tuple[int, str, int, int]]]:
    """int16 samples, sample rate and (event type, phone, ms, text position) events of one utterance; `ssml`
    lets the text carry `<prosody>` markup. Uses herd.speech.synth's single engine under its lock (espeak-ng
    is not reentrant) with a callback of our own for the call: word events need their text position (espeak-ng
    joins some function words into one word event, "source of which"), which synth's callback drops."""
    e = engine()
    chunks: list[np.ndarray] = []
    events: list[tuple[int, str, int, int]] = []

    def on_audio(wav: Any, n: int, evs: Any) -> int:
        if n > 0:
            chunks.append(np.ctypeslib.as_array(wav, shape=(n,)).copy())
        i = 0
        while evs[i].type != 0:  # espeakEVENT_LIST_TERMINATED
            ev = evs[i]
            if ev.type in (_EVENT_PHONEME, _EVENT_WORD, _EVENT_END):
                name = ev.id.string.decode("utf-8", "replace") if ev.type == _EVENT_PHONEME else ""
                events.append((ev.type, name, ev.audio_position, ev.text_position))
            i += 1
        return 0

    callback = _CALLBACK(on_audio)
    with e.lock:
        if e.lib.espeak_SetVoiceByName(voice.name.encode()) != 0:
            raise ValueError(f"espeak-ng has no voice {voice.name!r}")
        for param, value in ((1, voice.rate), (3, voice.pitch), (4, voice.range)):  # RATE, PITCH, RANGE
            e.lib.espeak_SetParameter(param, int(value), 0)
        raw = text.encode("utf-8") + b"\0"
        flags = _CHARS_UTF8 | (_SSML if ssml else 0)
        e.lib.espeak_SetSynthCallback(callback)
        try:
            err = e.lib.espeak_Synth(
                ctypes.create_string_buffer(raw), len(raw), 0, _POS_CHARACTER, 0, flags, None, None
            )
        finally:
            e.lib.espeak_SetSynthCallback(e._callback)
        if err != 0:
            raise RuntimeError(f"espeak-ng synthesis failed (error {err}) for {text[:40]!r}")
    return (np.concatenate(chunks) if chunks else np.zeros(0, np.int16)), e.sample_rate, events


def word_starts(text: str) -> list[int]:
    """1-based character position of each whitespace word (espeak-ng's text_position counts characters)."""
    import re

    return [m.start() + 1 for m in re.finditer(r"\S+", text)]


@dataclass
class Phone:
    name: str  # espeak-ng phoneme mnemonic, stress marks included ("'oU")
    start: float  # seconds
    end: float
    word: int  # index of the word it belongs to


def phones_by_word(events: Sequence[tuple[int, str, int, int]], starts: Sequence[int]) -> list[Phone]:
    """Phones (pauses "_" left out) with the index of the word they belong to: a word event at text position p
    starts the last word whose start is ≤ p (`starts`, from `word_starts`). A phone ends where the next event
    begins, as `synth.synthesize_phonemes` measures it."""
    import bisect

    phones: list[Phone] = []
    word = 0
    for (kind, name, ms, pos), nxt in zip(events, [*events[1:], None], strict=True):
        if kind == _EVENT_WORD:
            word = max(bisect.bisect_right(starts, pos) - 1, 0)
        elif kind == _EVENT_PHONEME and name.strip() and not name.startswith("_") and nxt is not None:
            phones.append(Phone(name, ms / 1000, nxt[2] / 1000, word))
    return phones


# ---------------------------------------------------------------- F0


def yin_f0(
    wav: np.ndarray, sr: int, fmin: float = 60.0, fmax: float = 500.0, frame_s: float = 0.03,
    hop_s: float = 0.005, threshold: float = 0.25,
) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """YIN (de Cheveigné & Kawahara 2002): frame centre times (s) and F0 in Hz, 0 where unvoiced.

    Difference function d(τ) = Σ (x_j − x_{j+τ})² over a W-sample window, from energies and an FFT
    cross-correlation; cumulative-mean normalized; the first τ under `threshold` (then its local minimum),
    refined by a parabola. The threshold is looser than the paper's 0.1 because espeak-ng's formant voice
    is less periodic than recorded speech (0.15 left 56% of its frames of a test sentence unvoiced, measured
    in development, most inside vowels). Frames quieter than 3% of the loudest frame's RMS are unvoiced."""
    x = np.asarray(wav, np.float64)
    w, tau_max, tau_min = int(frame_s * sr), int(sr / fmin), max(2, int(sr / fmax))
    hop = max(1, int(hop_s * sr))
    if len(x) < w + tau_max + 1:
        return np.zeros(0), np.zeros(0)
    starts = np.arange(0, len(x) - w - tau_max, hop)
    seg = np.stack([x[s : s + w + tau_max] for s in starts])  # (F, W + τmax)
    n_fft = 1 << int(np.ceil(np.log2(2 * (w + tau_max))))
    head = np.fft.rfft(seg[:, :w], n_fft)
    full = np.fft.rfft(seg, n_fft)
    r = np.fft.irfft(np.conj(head) * full, n_fft)[:, : tau_max + 1]  # r(τ) = Σ_j x_j x_{j+τ}
    c = np.concatenate([np.zeros((len(seg), 1)), np.cumsum(seg**2, axis=1)], axis=1)
    taus = np.arange(tau_max + 1)
    energy_tau = c[:, taus + w] - c[:, taus]  # Σ_{j<W} x_{j+τ}²
    d = np.maximum(energy_tau[:, :1] + energy_tau - 2 * r, 0.0)  # (F, τmax + 1)
    cum = np.cumsum(d[:, 1:], axis=1)
    cmnd = np.ones_like(d)
    cmnd[:, 1:] = d[:, 1:] * taus[1:] / np.maximum(cum, 1e-12)
    rms = np.sqrt(energy_tau[:, 0] / w)
    loud = rms > 0.03 * (rms.max() if len(rms) else 0)
    f0 = np.zeros(len(seg))
    for i in np.flatnonzero(loud):
        below = np.flatnonzero(cmnd[i, tau_min:tau_max] < threshold)
        if not below.size:
            continue
        t = tau_min + below[0]
        while t + 1 < tau_max and cmnd[i, t + 1] < cmnd[i, t]:
            t += 1
        a, b, cc = cmnd[i, t - 1], cmnd[i, t], cmnd[i, t + 1]
        shift = 0.5 * (a - cc) / (a - 2 * b + cc) if (a - 2 * b + cc) > 0 else 0.0
        f0[i] = sr / (t + shift)
    return (starts + w / 2) / sr, f0


def phone_f0(phones: Sequence[Phone], times: np.ndarray, f0: np.ndarray) -> list[float]:
    """Median F0 of each phone's voiced frames; NaN where under a third of its frames are voiced."""
    out = []
    for p in phones:
        inside = f0[(times >= p.start) & (times < p.end)]
        voiced = inside[inside > 0]
        out.append(float(np.median(voiced)) if inside.size and voiced.size * 3 >= inside.size else math.nan)
    return out


def cents(hz: Tensor | np.ndarray | float) -> Any:
    """Pitch in cents above F0_REF_HZ (1200 per octave)."""
    return (
        1200 * np.log2(np.asarray(hz) / F0_REF_HZ) if not isinstance(hz, Tensor) else 1200 * torch.log2(hz / F0_REF_HZ)
    )


# ---------------------------------------------------------------- data


@dataclass
class ProsodyUtt:
    text: str
    words: list[str]
    phones: list[str]
    word_of: list[int]  # per phone
    dur_ms: list[float]
    f0_hz: list[float]  # NaN where unvoiced
    split: str = "train"


def build_utterance(text: str, voice: Voice) -> ProsodyUtt | str:
    """Targets of one sentence from espeak-ng, or a drop reason."""
    words = [core for _, core in split_words(text)]
    wav, sr, events = speak_events(text, voice)
    phones = phones_by_word(events, word_starts(text))
    if len(words) != len(word_starts(text)):
        return "empty_word"  # a word that is punctuation only: no LM word for it
    if not phones:
        return "no_phones"
    times, f0 = yin_f0(wav.astype(np.float64) / 32768.0, sr)
    return ProsodyUtt(
        text, words, [p.name for p in phones], [p.word for p in phones],
        [1000 * (p.end - p.start) for p in phones], phone_f0(phones, times, f0),
    )  # fmt: skip


def text_split(text: str, test_fraction: float) -> str:
    h = int(hashlib.sha256(text.lower().encode()).hexdigest()[:8], 16)
    return "test" if (h % 1000) / 1000 < test_fraction else "train"


# ---------------------------------------------------------------- the model


def position_features(utt: ProsodyUtt) -> Tensor:
    """(P, 4): phone position in its word and the word's in the sentence (0..1), last phone of word, last word."""
    n_words = len(utt.words)
    counts = np.bincount(utt.word_of, minlength=n_words)
    rows, seen = [], np.zeros(n_words, int)
    for w in utt.word_of:
        k = seen[w]
        seen[w] += 1
        rows.append(
            [k / max(counts[w] - 1, 1), w / max(n_words - 1, 1), float(k == counts[w] - 1), float(w == n_words - 1)]
        )
    return torch.tensor(rows, dtype=torch.float32)


class ProsodyModel(nn.Module):
    """Phone (with neighbours) + position + LM state of its word and the next word → (log duration, F0 cents)."""

    def __init__(self, n_phones: int, lm_dim: int, use_lm: bool = True, hidden: int = 128) -> None:
        super().__init__()
        self.use_lm = use_lm
        self.phone = nn.Embedding(n_phones + 1, 32)  # id 0: unknown / sentence edge
        # 1,152 LM inputs against ~20k training phones overfit (measured: duration MAE above the baseline's
        # with a 64-wide projection and no dropout), so the LM path is narrow and dropped out [D].
        self.lm = nn.Sequential(nn.Dropout(0.5), nn.Linear(2 * lm_dim, 32))
        self.register_buffer("lm_mean", torch.zeros(2 * lm_dim))
        self.register_buffer("lm_std", torch.ones(2 * lm_dim))
        self.mlp = nn.Sequential(nn.Linear(3 * 32 + 4 + 32, hidden), nn.GELU(), nn.Linear(hidden, hidden), nn.GELU(),
                                 nn.Linear(hidden, 2))  # fmt: skip

    def forward(self, ids: Tensor, pos: Tensor, lm: Tensor) -> Tensor:
        """ids (N, 3) prev/cur/next phone, pos (N, 4), lm (N, 2·dim) → (N, 2): log(ms), cents / 1200."""
        z = self.lm((lm - self.lm_mean) / self.lm_std) if self.use_lm else torch.zeros(len(ids), 32)
        return self.mlp(torch.cat([self.phone(ids).flatten(1), pos, z], dim=1))


@dataclass
class Batch:
    ids: Tensor
    pos: Tensor
    lm: Tensor
    log_dur: Tensor
    f0_oct: Tensor  # octaves above F0_REF_HZ, NaN where unvoiced
    utt: Tensor  # utterance index of each phone (for CIs over sentences)


def make_batch(utts: Sequence[ProsodyUtt], states: Sequence[Tensor], vocab: dict[str, int]) -> Batch:
    ids, pos, lm, dur, f0, which = [], [], [], [], [], []
    for u, (utt, st) in enumerate(zip(utts, states, strict=True)):
        cur = [vocab.get(p, 0) for p in utt.phones]
        ids.append(torch.tensor([[a, b, c] for a, b, c in zip([0, *cur[:-1]], cur, [*cur[1:], 0], strict=True)]))
        pos.append(position_features(utt))
        w = torch.tensor(utt.word_of)
        lm.append(torch.cat([st[w], st[(w + 1).clamp(max=len(utt.words) - 1)]], dim=1))
        dur.append(torch.log(torch.tensor(utt.dur_ms).clamp_min(1.0)))
        f0.append(torch.log2(torch.tensor(utt.f0_hz, dtype=torch.float32) / F0_REF_HZ))
        which.append(torch.full((len(cur),), u))
    return Batch(torch.cat(ids), torch.cat(pos), torch.cat(lm), torch.cat(dur), torch.cat(f0), torch.cat(which))


def prosody_loss(pred: Tensor, log_dur: Tensor, f0_oct: Tensor) -> Tensor:
    """MSE of log duration plus MSE of F0 in octaves over voiced phones (equal weights: ~0.1 each) [D]."""
    voiced = ~torch.isnan(f0_oct)
    f0_term = ((pred[voiced, 1] - f0_oct[voiced]) ** 2).mean() if voiced.any() else pred.sum() * 0
    return ((pred[:, 0] - log_dur) ** 2).mean() + f0_term


def fit_prosody(b: Batch, n_phones: int, use_lm: bool, seed: int, steps: int, lr: float) -> ProsodyModel:
    torch.manual_seed(seed)
    model = ProsodyModel(n_phones, b.lm.shape[1] // 2, use_lm)
    model.lm_mean.copy_(b.lm.mean(0))
    model.lm_std.copy_(b.lm.std(0).clamp_min(1e-4))
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-2)
    g = torch.Generator().manual_seed(seed)
    for step in range(steps):
        idx = torch.randint(0, len(b.ids), (min(512, len(b.ids)),), generator=g)
        for group in opt.param_groups:
            group["lr"] = lr * 0.5 * (1 + math.cos(math.pi * step / steps))
        loss = prosody_loss(model(b.ids[idx], b.pos[idx], b.lm[idx]), b.log_dur[idx], b.f0_oct[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


def predict(model: ProsodyModel, b: Batch) -> tuple[Tensor, Tensor]:
    """Durations (ms) and F0 (Hz) per phone."""
    with torch.no_grad():
        out = model(b.ids, b.pos, b.lm)
    return torch.exp(out[:, 0]), F0_REF_HZ * torch.exp2(out[:, 1])


def mean_per_phone(train: Batch) -> tuple[dict[int, float], dict[int, float]]:
    """The baseline: each phone's mean duration (ms) and mean F0 (Hz) over the training set."""
    cur = train.ids[:, 1]
    dur, f0 = torch.exp(train.log_dur), F0_REF_HZ * torch.exp2(train.f0_oct)
    d = {int(p): float(dur[cur == p].mean()) for p in cur.unique()}
    f = {}
    for p in cur.unique():
        v = f0[(cur == p) & ~torch.isnan(f0)]
        f[int(p)] = float(v.mean()) if len(v) else float(torch.nanmean(f0))
    return d, f


def baseline_predict(table: tuple[dict[int, float], dict[int, float]], b: Batch) -> tuple[Tensor, Tensor]:
    d, f = table
    fallback_d, fallback_f = float(np.mean(list(d.values()))), float(np.mean(list(f.values())))
    cur = [int(p) for p in b.ids[:, 1]]
    return torch.tensor([d.get(p, fallback_d) for p in cur]), torch.tensor([f.get(p, fallback_f) for p in cur])


# ---------------------------------------------------------------- metrics


def duration_mae_ms(pred: Tensor, target: Tensor) -> float:
    return float((pred - target).abs().mean())


def f0_rmse_cents(pred_hz: Tensor, target_hz: Tensor) -> float:
    """RMSE in cents over phones voiced in the target (NaN targets skipped)."""
    ok = ~torch.isnan(target_hz)
    return float(torch.sqrt(((cents(pred_hz[ok]) - cents(target_hz[ok])) ** 2).mean()))


def bootstrap_ci(
    per_item: Sequence[Tensor], stat: str, seed: int = 0, n_boot: int = 1000
) -> tuple[float, float, float]:
    """A per-phone error statistic ("mae" or "rmse") with a 95% percentile CI from resampling sentences
    (phones of one sentence are not independent). per_item: each sentence's per-phone errors."""
    sums = torch.tensor([float((e.abs() if stat == "mae" else e**2).sum()) for e in per_item])
    counts = torch.tensor([float(len(e)) for e in per_item])

    def value(s: Tensor, n: Tensor) -> Tensor:
        m = s.sum(-1) / n.sum(-1)
        return m if stat == "mae" else torch.sqrt(m)

    g = torch.Generator().manual_seed(seed)
    idx = torch.randint(0, len(per_item), (n_boot, len(per_item)), generator=g)
    boots = value(sums[idx], counts[idx]).sort().values
    return float(value(sums, counts)), float(boots[int(0.025 * n_boot)]), float(boots[int(0.975 * n_boot) - 1])


def errors_by_utt(pred: Tensor, target: Tensor, utt: Tensor, transform: Any = None) -> list[Tensor]:
    """Per sentence, pred − target over phones with a target (NaN targets skipped)."""
    t = transform or (lambda v: v)
    out = []
    for u in utt.unique():
        m = (utt == u) & ~torch.isnan(target)
        out.append(t(pred[m]) - t(target[m]))
    return out


def paired_bootstrap(
    a: Sequence[Tensor], b: Sequence[Tensor], stat: str, seed: int = 0, n_boot: int = 1000
) -> dict[str, float]:
    """stat(a) − stat(b) over the same sentences (a, b: per-sentence errors of two predictors) with a 95% CI."""

    def agg(errs: Sequence[Tensor]) -> tuple[Tensor, Tensor]:
        s = torch.tensor([float((e.abs() if stat == "mae" else e**2).sum()) for e in errs])
        return s, torch.tensor([float(len(e)) for e in errs])

    (sa, n), (sb, _) = agg(a), agg(b)
    g = torch.Generator().manual_seed(seed)
    idx = torch.randint(0, len(a), (n_boot, len(a)), generator=g)
    f = (lambda v: v) if stat == "mae" else torch.sqrt
    diff = f(sa[idx].sum(1) / n[idx].sum(1)) - f(sb[idx].sum(1) / n[idx].sum(1))
    diff = diff.sort().values
    point = float(f(sa.sum() / n.sum()) - f(sb.sum() / n.sum()))
    return {"diff": point, "ci_low": float(diff[int(0.025 * n_boot)]), "ci_high": float(diff[int(0.975 * n_boot) - 1])}


# ---------------------------------------------------------------- playback


def word_targets(utt: ProsodyUtt, dur_ms: Sequence[float], f0_hz: Sequence[float]) -> tuple[list[float], list[float]]:
    """Per word: the sum of its phones' durations (ms) and the mean of its phones' F0 (Hz)."""
    n = len(utt.words)
    dur, f0s = [0.0] * n, [[] for _ in range(n)]
    for w, d, f in zip(utt.word_of, dur_ms, f0_hz, strict=True):
        dur[w] += float(d)
        f0s[w].append(float(f))
    return dur, [float(np.nanmean(v)) if v and not np.all(np.isnan(v)) else math.nan for v in f0s]


def prosody_ssml(words: Sequence[str], rate: Sequence[float], pitch: Sequence[float]) -> tuple[str, list[int]]:
    """SSML with one `<prosody rate pitch>` per word, and the 1-based position of each word in it (espeak-ng's
    text positions count the markup)."""
    from xml.sax.saxutils import escape

    text, starts = "<speak>", []
    for w, r, p in zip(words, rate, pitch, strict=True):
        head = f'<prosody rate="{r:.0f}%" pitch="{p:+.0f}%">'
        starts.append(len(text) + len(head) + 1)
        text += f"{head}{escape(w)}</prosody> "
    return text + "</speak>", starts


def _measure(
    words: Sequence[str], rate: Sequence[float], pitch: Sequence[float], voice: Voice
) -> tuple[np.ndarray, int, list[Phone], list[float]]:
    text, starts = prosody_ssml(words, rate, pitch)
    wav, sr, events = speak_events(text, voice, ssml=True)
    phones = phones_by_word(events, starts)
    dur = [0.0] * len(words)
    for p in phones:
        dur[p.word] += 1000 * (p.end - p.start)
    return wav, sr, phones, dur


def speak_with_prosody(
    words: Sequence[str], word_dur_ms: Sequence[float], word_f0_hz: Sequence[float], voice: Voice, rounds: int = 3
) -> tuple[np.ndarray, int, list[Phone]]:
    """Speak `words` through espeak-ng so each word lasts its target duration and sits near its target F0.

    espeak-ng's SSML rate and pitch are not linear in duration and Hz, so both are calibrated in closed loop:
    speak, measure each word (phone events; YIN F0), rescale rate by measured/target duration and pitch by the
    F0 ratio, repeat. Returns int16 samples, the sample rate and the phones as finally spoken."""
    n = len(words)
    rate, pitch = [100.0] * n, [0.0] * n
    wav, sr, phones, dur = _measure(words, rate, pitch, voice)
    for _ in range(rounds):
        rate = [
            float(np.clip(r * d / t, 20, 500)) if d > 0 and t > 0 else r
            for r, d, t in zip(rate, dur, word_dur_ms, strict=True)
        ]
        times, f0 = yin_f0(wav.astype(np.float64) / 32768.0, sr)
        now = word_targets(_as_utt(words, phones), [1.0] * len(phones), phone_f0(phones, times, f0))[1]
        pitch = [float(np.clip(p + 100 * (t / m - 1), -90, 200)) if m == m and t == t and m > 0 else p
                 for p, m, t in zip(pitch, now, word_f0_hz, strict=True)]  # fmt: skip
        wav, sr, phones, dur = _measure(words, rate, pitch, voice)
    return wav, sr, phones


def _as_utt(words: Sequence[str], phones: Sequence[Phone]) -> ProsodyUtt:
    return ProsodyUtt("", list(words), [p.name for p in phones], [p.word for p in phones], [], [])


# ---------------------------------------------------------------- the stage


@dataclass
class ProsodyConfig:
    out: str = "runs/speech/prosody"
    lm: str = "smollm2"
    layer: int = 0  # 0: the paper's relative depth (layer 16 of 32 [P §8])
    voice: str = "en"  # espeak-ng voice of the targets (one voice: the prosody of one speaker)
    rate: int = 175
    max_sentences: int = 1400
    test_fraction: float = 0.2
    steps: int = 1500
    lr: float = 3e-3
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    playback: int = 3  # test sentences spoken back through espeak-ng with the predicted prosody


def build_dataset(cfg: ProsodyConfig, out: Path) -> tuple[list[ProsodyUtt], dict[str, int]]:
    from herd.speech.tn import bundled_contexts

    voice = Voice(language=cfg.voice, rate=cfg.rate)
    kept, dropped = [], {}
    import random

    texts = bundled_contexts()
    random.Random(0).shuffle(texts)  # the corpus is sorted alphabetically; take an unbiased slice
    texts = texts[: cfg.max_sentences]
    for text in texts:
        r = build_utterance(text, voice)
        if isinstance(r, str):
            dropped[r] = dropped.get(r, 0) + 1
            (out / "dropped").mkdir(exist_ok=True)
            with (out / "dropped" / "dropped.jsonl").open("a") as f:
                f.write(json.dumps({"text": text, "reason": r}) + "\n")
            continue
        r.split = text_split(text, cfg.test_fraction)
        kept.append(r)
    return kept, {"in": len(texts), "kept": len(kept), "dropped": dropped}


def train_prosody(cfg: ProsodyConfig, out: Path) -> dict[str, Any]:
    from safetensors.torch import save_file

    t0 = time.time()
    utts, counts = build_dataset(cfg, out)
    with (out / "targets.jsonl").open("w") as f:
        for u in utts:
            f.write(json.dumps(u.__dict__) + "\n")
    model, tok = load_frozen_lm(cfg.lm)
    layer = cfg.layer or paper_layer(model.cfg.n_layers)
    states = word_states(model, tok, [u.words for u in utts], layer)
    train = [i for i, u in enumerate(utts) if u.split == "train"]
    test = [i for i, u in enumerate(utts) if u.split == "test"]
    vocab = {p: k + 1 for k, p in enumerate(sorted({p for i in train for p in utts[i].phones}))}
    b_train = make_batch([utts[i] for i in train], [states[i] for i in train], vocab)
    b_test = make_batch([utts[i] for i in test], [states[i] for i in test], vocab)
    metrics: dict[str, Any] = {"layer": layer, "train_sentences": len(train), "test_sentences": len(test),
                               "test_phones": len(b_test.ids), "seeds": []}  # fmt: skip
    base = baseline_predict(mean_per_phone(b_train), b_test)
    metrics["mean_per_phone"] = _scores(base, b_test)
    best = None
    for seed in cfg.seeds:
        row: dict[str, Any] = {"seed": seed}
        for use_lm in (True, False):
            m = fit_prosody(b_train, len(vocab), use_lm, seed, cfg.steps, cfg.lr)
            pred = predict(m, b_test)
            name = "lm" if use_lm else "no_lm"
            row[name] = _scores(pred, b_test)
            row[f"{name}_minus_baseline"] = _paired(pred, base, b_test, seed)
            if use_lm:
                best = best or (m, pred)
                lm_pred = pred
            else:
                row["lm_minus_no_lm"] = _paired(lm_pred, pred, b_test, seed)
        metrics["seeds"].append(row)
        log.info("prosody seed %d: %s", seed, {k: v for k, v in row.items() if k in ("lm", "no_lm")})
    assert best is not None
    save_file({k: v.contiguous() for k, v in best[0].state_dict().items()}, str(out / "prosody_model.safetensors"))
    (out / "phones.json").write_text(json.dumps(vocab))
    metrics["playback"] = _playback(cfg, [utts[i] for i in test[: cfg.playback]], best[1], out)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=1))
    counts |= {"wall_s": round(time.time() - t0, 1)}
    for key in ("lm", "no_lm"):
        counts[f"dur_mae_ms_{key}"] = round(float(np.mean([r[key]["dur_mae_ms"][0] for r in metrics["seeds"]])), 2)
        counts[f"f0_rmse_cents_{key}"] = round(
            float(np.mean([r[key]["f0_rmse_cents"][0] for r in metrics["seeds"]])), 1
        )
    counts["dur_mae_ms_baseline"] = round(metrics["mean_per_phone"]["dur_mae_ms"][0], 2)
    counts["f0_rmse_cents_baseline"] = round(metrics["mean_per_phone"]["f0_rmse_cents"][0], 1)
    return counts


def _scores(pred: tuple[Tensor, Tensor], b: Batch) -> dict[str, Any]:
    dur_t, f0_t = torch.exp(b.log_dur), F0_REF_HZ * torch.exp2(b.f0_oct)
    return {
        "dur_mae_ms": bootstrap_ci(errors_by_utt(pred[0], dur_t, b.utt), "mae"),
        "f0_rmse_cents": bootstrap_ci(errors_by_utt(pred[1], f0_t, b.utt, cents), "rmse"),
    }


def _paired(a: tuple[Tensor, Tensor], b_: tuple[Tensor, Tensor], b: Batch, seed: int) -> dict[str, Any]:
    dur_t, f0_t = torch.exp(b.log_dur), F0_REF_HZ * torch.exp2(b.f0_oct)
    dur_a, dur_b = errors_by_utt(a[0], dur_t, b.utt), errors_by_utt(b_[0], dur_t, b.utt)
    f0_a, f0_b = errors_by_utt(a[1], f0_t, b.utt, cents), errors_by_utt(b_[1], f0_t, b.utt, cents)
    return {
        "dur_mae_ms": paired_bootstrap(dur_a, dur_b, "mae", seed),
        "f0_rmse_cents": paired_bootstrap(f0_a, f0_b, "rmse", seed),
    }


def playback_errors(utt: ProsodyUtt, dur_ms: Sequence[float], phones: Sequence[Phone]) -> dict[str, Any]:
    """How closely spoken phones follow predicted durations: per word (words espeak-ng gave phones) and, where
    it spoke the same phone sequence, per phone: mean absolute error (ms) and mean relative error."""
    want = word_targets(utt, dur_ms, [0.0] * len(dur_ms))[0]
    got = word_targets(_as_utt(utt.words, phones), [1000 * (p.end - p.start) for p in phones], [0.0] * len(phones))[0]
    pairs = [(g, w) for g, w in zip(got, want, strict=True) if g > 0 and w > 0]
    out: dict[str, Any] = {
        "word_dur_pred_ms": [round(w, 1) for w in want], "word_dur_spoken_ms": [round(g, 1) for g in got],
        "word_rel_err": float(np.mean([abs(g - w) / w for g, w in pairs])) if pairs else math.nan,
        "same_phones": [p.name for p in phones] == list(utt.phones),
    }  # fmt: skip
    if out["same_phones"]:
        got_p = np.array([1000 * (p.end - p.start) for p in phones])
        want_p = np.asarray(dur_ms, dtype=np.float64)
        out["phone_mae_ms"] = float(np.mean(np.abs(got_p - want_p)))
        long = want_p >= 20  # espeak-ng emits some 0–5 ms phones: a relative error there says nothing
        out["phone_rel_err_20ms"] = (
            float(np.mean(np.abs(got_p - want_p)[long] / want_p[long])) if long.any() else math.nan
        )
        out["phone_corr"] = float(np.corrcoef(got_p, want_p)[0, 1]) if len(got_p) > 1 else math.nan
    return out


def _playback(
    cfg: ProsodyConfig, utts: Sequence[ProsodyUtt], pred: tuple[Tensor, Tensor], out: Path
) -> list[dict[str, Any]]:
    """Speak test sentences with the predicted prosody (WAVs kept); how closely the audio follows it."""
    import soundfile as sf

    voice = Voice(language=cfg.voice, rate=cfg.rate)
    rows, start = [], 0
    for k, utt in enumerate(utts):
        n = len(utt.phones)
        dur, f0 = pred[0][start : start + n].tolist(), pred[1][start : start + n].tolist()
        start += n
        wd, wf = word_targets(utt, dur, f0)
        wav, sr, phones = speak_with_prosody(utt.words, wd, wf, voice)
        sf.write(str(out / f"playback_{k}.wav"), wav, sr)
        rows.append({"text": utt.text} | playback_errors(utt, dur, phones))
    return rows


def run_prosody(cfg: ProsodyConfig) -> Any:
    return run_fn("speech_prosody", [], cfg, cfg.out, lambda tmp: train_prosody(cfg, tmp))


def load_prosody_config(path: str | Path | None, overrides: list[str] | tuple[str, ...] = ()) -> ProsodyConfig:
    return load_config(ProsodyConfig, path, overrides)
