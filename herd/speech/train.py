"""Speech training: BEST-RQ pre-training of the encoder, then adapter + encoder SFT with the LM frozen,
then WER/BLEU on held-out sentences in trained and unseen voices [P §8.2, §8.3, §8.4].

The frozen LM is a herd model: `lm = "smollm2"` (the bundled 135M model) or a folder, or `lm = "tiny"`:
a small herd Llama with a BPE tokenizer both trained here on the train split's text, then frozen. On two
CPU cores the 135M LM costs ~30 s per SFT step under load (measured; docs/speech.md), so the bundled
recipe uses "tiny" and the same code runs the real LM where compute allows.

Out (one folder): lm/ (the tiny LM as a herd model folder), encoder/adapter(/ctc_head).safetensors,
speech_config.json (what herd.speech.infer rebuilds the model from), metrics.json (losses, WER with
95% CIs per split and voice, BLEU), transcripts.jsonl.
"""

from __future__ import annotations

import json
import math
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch

from herd.core.config import load_config
from herd.core.logging import get_logger
from herd.core.stage import run_fn
from herd.model import ModelConfig, Transformer, build_model, load_model
from herd.speech.adapter import ADAPTER_PRESETS, SpeechAdapter, SpeechLM
from herd.speech.bestrq import BestRQ, BestRQConfig
from herd.speech.conformer import ConformerEncoder
from herd.speech.conformer import get_preset as conformer_preset
from herd.speech.data import read_examples
from herd.speech.frontend import LogMel

log = get_logger(__name__)


@dataclass
class TinyLMConfig:
    """The recipe's frozen LM when the bundled 135M model is too slow: trained here on text only."""

    vocab_size: int = 1024  # 256 bytes + 512 merges + 256 Llama 3 specials
    dim: int = 128
    n_layers: int = 2
    n_heads: int = 4
    steps: int = 300
    lr: float = 3e-3
    batch_size: int = 32
    # Share of "copy" documents `<bos> [prompt] S\n S <eot>`, the loss on the second S and <eot> only (the
    # first copy is the input, not a thing to predict). They give the frozen LM the in-context copying every
    # real LM has (induction heads), which "Repeat after me" relies on [D, see docs/speech.md].
    copy_fraction: float = 0.0
    copy_sentence_fraction: float = 0.0  # of those, S is a training text; else a random string of its words
    copy_prompt_fraction: float = 0.0  # of those, an ASR prompt comes first, as in the speech model's input


ADAPTER_OUTPUTS = ("embeddings", "tokens")


@dataclass
class SpeechTrainConfig:
    data: str = "runs/speech/tiny/data"
    out: str = "runs/speech/tiny/model"
    lm: str = "tiny"  # "tiny" (trained here, frozen), "smollm2", or a herd/HF model folder
    tiny_lm: TinyLMConfig = field(default_factory=TinyLMConfig)
    encoder: str = "tiny"  # herd.speech.conformer PRESETS
    adapter: str = "tiny"  # herd.speech.adapter ADAPTER_PRESETS
    bestrq: BestRQConfig = field(default_factory=BestRQConfig)
    pretrain_steps: int = 200
    pretrain_lr: float = 2e-3
    sft_steps: int = 1000
    sft_lr: float = 1e-3
    warmup: int = 50  # SFT warm-up steps before the cosine decay
    ctc_weight: float = 0.0  # auxiliary character CTC loss on the encoder; an addition to the paper [D]
    # "embeddings": the paper's linear adapter output; "tokens": CTC over the LM's tokens, emitted tokens enter the
    # LM as mixes of its own embeddings (herd.speech.adapter.SpeechAdapter) [D].
    adapter_output: Literal["embeddings", "tokens"] = "embeddings"
    token_ctc_weight: float = 1.0  # the adapter's token CTC loss during SFT ("tokens" only)
    token_ctc_steps: int = 0  # encoder + adapter token CTC (+ character CTC) before SFT, no LM forward [D]
    token_ctc_lr: float = 2e-3
    # Encoder CTC warm-up between BEST-RQ and SFT: encoder + character CTC head alone, no LM [D, not in the paper].
    ctc_steps: int = 0
    ctc_lr: float = 3e-3
    # The CTC head predicts this many labels per 40 ms frame: espeak-ng speaks ~1.5 frames per character
    # (5% of utterances under 1.1), too few for CTC, which needs a blank between repeated letters [D].
    ctc_upsample: int = 2
    # The encoder's input: each utterance's mel bins at zero mean and unit variance, as BEST-RQ's targets see
    # them (herd.speech.conformer.ConformerConfig.utterance_norm) [D].
    utterance_norm: bool = True
    # SpecAugment on training batches (CTC warm-up and SFT): 2 mel bands of up to 15 bins and one time span of up
    # to 20 frames (0.2 s) per second are zeroed (after normalization, so zero is the bin's mean) [D].
    spec_augment: bool = False
    batch_size: int = 16
    tasks: list[str] = field(default_factory=lambda: ["asr", "ast", "dialogue"])
    max_eval: int = 200  # utterances per held-out split
    seed: int = 0
    threads: int = 0  # torch intra-op threads; 0 leaves torch's default

    def __post_init__(self) -> None:  # before any features or LM training, not after
        if self.adapter_output not in ADAPTER_OUTPUTS:
            raise ValueError(f"adapter_output: {self.adapter_output!r} is not one of {', '.join(ADAPTER_OUTPUTS)}")


# ---------------------------------------------------------------- features


def load_features(rows: list[dict[str, Any]]) -> list[torch.Tensor]:
    """Log-mel features (T, 80) of each row's audio, computed once (the front end is fixed)."""
    import soundfile as sf

    logmel = LogMel()
    feats = []
    for r in rows:
        wav, sr = sf.read(r["audio"], dtype="float32")
        if sr != 16_000:
            raise ValueError(f"{r['audio']}: sample rate {sr}, expected 16000")
        feats.append(logmel(torch.from_numpy(wav)[None])[0])
    return feats


def pad_features(feats: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    n = torch.tensor([f.shape[0] for f in feats])
    return torch.nn.utils.rnn.pad_sequence(feats, batch_first=True), n


def spec_augment(x: torch.Tensor, n: torch.Tensor, rng: random.Random) -> torch.Tensor:
    """SpecAugment's frequency and time masks (Park et al. 2019) on normalized features (B, T, 80)."""
    from herd.speech.frontend import normalize_features

    x = normalize_features(x, n)
    for i in range(x.shape[0]):
        for _ in range(2):
            w = rng.randrange(16)
            f = rng.randrange(x.shape[2] - w + 1)
            x[i, :, f : f + w] = 0.0
        T = int(n[i])
        for _ in range(max(1, T // 100)):
            w = rng.randrange(min(21, T // 5 + 1))
            t = rng.randrange(T - w + 1)
            x[i, t : t + w] = 0.0
    return x


# ---------------------------------------------------------------- the frozen LM and its prompts


def build_tiny_lm(texts: list[str], cfg: TinyLMConfig, seed: int,
                  prompts: tuple[str, ...] = ()) -> tuple[Transformer, Any]:  # fmt: skip
    """A BPE tokenizer and a small herd Llama trained on `texts` (next-token loss) and on copy documents of them
    (`prompts` are the ASR prompts copy documents may start with), returned frozen."""
    from herd.tokenizer import train_tokenizer

    tok = train_tokenizer(texts, cfg.vocab_size)
    mcfg = ModelConfig(dim=cfg.dim, n_layers=cfg.n_layers, n_heads=cfg.n_heads, n_kv_heads=cfg.n_heads,
                       vocab_size=cfg.vocab_size, ffn_dim=4 * cfg.dim, max_seq_len=1024, rope_scaling=None,
                       tie_embeddings=True)  # fmt: skip
    lm = build_model(mcfg, seed=seed)
    rows = [[*tok.encode(t, bos=True), tok.eot_id] for t in texts]
    copies = CopyDocuments(tok, [t for t in texts if t not in prompts], list(prompts), cfg)
    opt = torch.optim.AdamW(lm.parameters(), lr=cfg.lr, weight_decay=0.0)
    rng = random.Random(seed)
    for step in range(cfg.steps):
        batch = [copies.draw(rng) if rng.random() < cfg.copy_fraction else _next_token(rows[rng.randrange(len(rows))])
                 for _ in range(cfg.batch_size)]  # fmt: skip
        x = torch.nn.utils.rnn.pad_sequence([torch.tensor(b[0]) for b in batch], batch_first=True)
        y = torch.nn.utils.rnn.pad_sequence([torch.tensor(b[1]) for b in batch], batch_first=True, padding_value=-100)
        loss = torch.nn.functional.cross_entropy(lm(x).flatten(0, 1), y.flatten(), ignore_index=-100)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        for g in opt.param_groups:
            g["lr"] = cfg.lr * 0.5 * (1 + math.cos(math.pi * (step + 1) / cfg.steps))
        if step % 250 == 0:
            log.info("tiny LM step %d loss %.3f", step, loss.item())
    log.info("tiny LM: loss %.3f after %d steps", loss.item(), cfg.steps)
    return lm.eval(), tok


def _next_token(ids: list[int]) -> tuple[list[int], list[int]]:
    return ids[:-1], ids[1:]


class CopyDocuments:
    """`<bos> [prompt] S\n S <eot>` as (inputs, labels), labels -100 except on the second S and <eot>."""

    def __init__(self, tok: Any, sentences: list[str], prompts: list[str], cfg: TinyLMConfig) -> None:
        self.tok, self.sentences, self.prompts, self.cfg = tok, sentences, prompts, cfg
        self.words = sorted({w for t in sentences for w in t.split()})
        self.newline = tok.encode("\n")

    def draw(self, rng: random.Random) -> tuple[list[int], list[int]]:
        if self.sentences and rng.random() < self.cfg.copy_sentence_fraction:
            text = rng.choice(self.sentences)
        else:
            text = " ".join(rng.choice(self.words) for _ in range(rng.randint(2, 10)))
        s = self.tok.encode(" " + text)  # tokenized once, so both copies match
        head = [self.tok.bos_id]
        if self.prompts and rng.random() < self.cfg.copy_prompt_fraction:
            head += self.tok.encode(rng.choice(self.prompts))
        ids = [*head, *s, *self.newline, *s, self.tok.eot_id]
        return ids[:-1], [-100] * (len(head) + len(s) + len(self.newline) - 1) + [*s, self.tok.eot_id]


def load_lm(cfg: SpeechTrainConfig, texts: list[str], prompts: tuple[str, ...] = ()) -> tuple[Transformer, Any]:
    if cfg.lm == "tiny":
        return build_tiny_lm(texts, cfg.tiny_lm, cfg.seed, prompts)
    from herd.tokenizer import load_tokenizer

    return load_model(cfg.lm).eval(), load_tokenizer(cfg.lm)


def end_of_turn(tok: Any) -> int:
    return tok.special_ids.get("<|eot_id|>", tok.special_ids.get("<|im_end|>", tok.eos_id))


def prompt_tokens(tok: Any, row: dict[str, Any]) -> tuple[list[int], list[int], list[int]]:
    """(prefix, suffix, target): `<bos> {prompt}` before the speech, nothing after it, then the target
    and the end-of-turn token. Plain text around the speech keeps sequences short on CPU."""
    prefix = tok.encode(row["prompt"], bos=True) if row["prompt"] else [tok.bos_id]
    return prefix, [], [*tok.encode(" " + row["target"]), end_of_turn(tok)]


# ---------------------------------------------------------------- training loops


def pretrain_bestrq(encoder: ConformerEncoder, feats: list[torch.Tensor], cfg: SpeechTrainConfig) -> list[float]:
    model = BestRQ(encoder, cfg.bestrq).train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.pretrain_lr, weight_decay=0.01)
    rng, g = random.Random(cfg.seed), torch.Generator().manual_seed(cfg.seed)
    losses = []
    for step in range(cfg.pretrain_steps):
        x, n = pad_features([feats[rng.randrange(len(feats))] for _ in range(cfg.batch_size)])
        out = model(x, n, g)
        _update(opt, params, out["loss"])
        _cosine(opt, cfg.pretrain_lr, step, cfg.pretrain_steps)
        losses.append(out["loss"].item())
    return losses


CTC_CHARS = " 'abcdefghijklmnopqrstuvwxyz0123456789"  # index + 1 is the CTC class; 0 is the blank


def ctc_targets(text: str) -> list[int]:
    """The normalized transcript as CTC classes (characters outside CTC_CHARS are dropped)."""
    return [CTC_CHARS.index(c) + 1 for c in normalize_text(text) if c in CTC_CHARS]


class CTCHead(torch.nn.Module):
    """Character CTC logits from encoder frames: `upsample` label slots per 40 ms frame [D, not in the paper]."""

    def __init__(self, dim: int, upsample: int = 1) -> None:
        super().__init__()
        self.upsample, self.n_classes = upsample, len(CTC_CHARS) + 1
        self.proj = torch.nn.Linear(dim, self.n_classes * upsample)

    def forward(self, h: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, T, dim) → log-probabilities (B, T·upsample, classes) and their lengths."""
        B, T, _ = h.shape
        z = self.proj(h).view(B, T * self.upsample, self.n_classes)
        return z.float().log_softmax(-1), lengths * self.upsample


def ctc_loss(head: CTCHead, h: torch.Tensor, lengths: torch.Tensor, texts: list[str]) -> torch.Tensor:
    """Character CTC on the encoder's frames: a direct alignment signal the tiny encoder learns from in minutes,
    where the LM's loss alone reaches it only through the adapter [D, not in the paper]."""
    targets = [torch.tensor(ctc_targets(t) or [1]) for t in texts]
    logp, n = head(h, lengths)
    return torch.nn.functional.ctc_loss(logp.transpose(0, 1), torch.cat(targets), n,
                                        torch.tensor([len(t) for t in targets]), zero_infinity=True)  # fmt: skip


def ctc_greedy(head: CTCHead, h: torch.Tensor, lengths: torch.Tensor) -> list[str]:
    """The character head's best path as text."""
    return ["".join(CTC_CHARS[c - 1] for c in ids) for ids in best_path(*head(h, lengths), blank=0)]


def best_path(logits: torch.Tensor, lengths: torch.Tensor, blank: int) -> list[list[int]]:
    """Greedy CTC decoding of (B, T, classes): the best class per frame up to each length, repeats merged, blanks
    removed."""
    out = []
    for row, k in zip(logits.argmax(-1).tolist(), lengths.tolist(), strict=True):
        ids, prev = [], blank
        for c in row[:k]:
            if c not in (blank, prev):
                ids.append(c)
            prev = c
        out.append(ids)
    return out


def _batch(feats: list[torch.Tensor], cfg: SpeechTrainConfig,
           rng: random.Random) -> tuple[list[int], torch.Tensor, torch.Tensor]:  # fmt: skip
    """A random batch of utterances: their indices, padded (SpecAugmented) features and lengths."""
    idx = [rng.randrange(len(feats)) for _ in range(cfg.batch_size)]
    x, n = pad_features([feats[i] for i in idx])
    return idx, (spec_augment(x, n, rng) if cfg.spec_augment else x), n


def _update(opt: torch.optim.Optimizer, params: list[torch.nn.Parameter], loss: torch.Tensor) -> None:
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(params, 1.0)
    opt.step()


def pretrain_ctc(encoder: ConformerEncoder, head: CTCHead, rows: list[dict[str, Any]], feats: list[torch.Tensor],
                 cfg: SpeechTrainConfig) -> list[float]:  # fmt: skip
    """Encoder + CTC head alone (no LM forward: ~3x cheaper per step than SFT), so SFT starts from an encoder
    that already spells [D]."""
    encoder.train()

    def loss_of(idx: list[int], x: torch.Tensor, n: torch.Tensor) -> torch.Tensor:
        return ctc_loss(head, *encoder(x, n), [rows[i]["target"] for i in idx])

    params = [*encoder.parameters(), *head.parameters()]
    return _warm_up(params, cfg.ctc_lr, cfg.ctc_steps, cfg.seed + 2, feats, cfg, loss_of, "encoder ctc")


def _warm_up(params: list[torch.nn.Parameter], lr: float, steps: int, seed: int, feats: list[torch.Tensor],
             cfg: SpeechTrainConfig, loss_of: Any, what: str) -> list[float]:  # fmt: skip
    """AdamW with warm-up + cosine LR over random (SpecAugmented) batches; `loss_of(idx, x, n)` is a step's loss."""
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.01)
    rng = random.Random(seed)
    losses = []
    for step in range(steps):
        _cosine(opt, lr, step, steps, cfg.warmup)
        loss = loss_of(*_batch(feats, cfg, rng))
        _update(opt, params, loss)
        losses.append(loss.item())
        if step % 100 == 0:
            log.info("%s step %d loss %.3f", what, step, loss.item())
    return losses


@torch.no_grad()
def evaluate_ctc(encoder: ConformerEncoder, head: CTCHead, rows: list[dict[str, Any]], feats: list[torch.Tensor],
                 cfg: SpeechTrainConfig) -> dict[str, float]:  # fmt: skip
    """The encoder's own greedy CTC transcripts: WER [95% CI] and CER (jiwer), a diagnostic of the acoustic model."""
    import jiwer

    encoder.eval()
    hyps: list[str] = []
    for s in range(0, len(rows), 32):
        x, n = pad_features(feats[s : s + 32])
        hyps += ctc_greedy(head, *encoder(x, n))
    refs = [normalize_text(r["target"]) for r in rows]
    return {**wer_with_ci(refs, hyps, cfg.seed), "cer": float(jiwer.cer(refs, hyps))}


def token_ctc_loss(logits: torch.Tensor, lengths: torch.Tensor, targets: list[list[int]]) -> torch.Tensor:
    """CTC of the adapter's token logits (B, S, V + 1) against the transcripts' LM tokens; the blank is class V."""
    tgt = [torch.tensor(t or [0]) for t in targets]
    logp = logits.float().log_softmax(-1).transpose(0, 1)
    return torch.nn.functional.ctc_loss(logp, torch.cat(tgt), lengths, torch.tensor([len(t) for t in tgt]),
                                        blank=logits.shape[-1] - 1, zero_infinity=True)  # fmt: skip


def _ctc_terms(model: SpeechLM, h: torch.Tensor, h_len: torch.Tensor, texts: list[str], tok: Any,
               cfg: SpeechTrainConfig, ctc_head: CTCHead | None) -> tuple[torch.Tensor, Any]:  # fmt: skip
    """The auxiliary CTC losses (character on the encoder, token on the adapter) and the adapter's token logits."""
    total, logits = torch.zeros(()), None
    if ctc_head is not None and cfg.ctc_weight:
        total = total + cfg.ctc_weight * ctc_loss(ctc_head, h, h_len, texts)
    if model.adapter.token_head is not None:
        logits = model.adapter.token_logits(h, h_len)
        total = total + cfg.token_ctc_weight * token_ctc_loss(*logits, [tok.encode(" " + t) for t in texts])
    return total, logits


def pretrain_token_ctc(model: SpeechLM, rows: list[dict[str, Any]], feats: list[torch.Tensor], tok: Any,
                       cfg: SpeechTrainConfig, ctc_head: CTCHead | None) -> list[float]:  # fmt: skip
    """Encoder + adapter on the token CTC loss (and the character one) before SFT: no LM forward, so cheap; SFT
    then starts from an adapter that already emits the transcript's tokens [D]."""
    model.train()

    def loss_of(idx: list[int], x: torch.Tensor, n: torch.Tensor) -> torch.Tensor:
        return _ctc_terms(model, *model.encoder(x, n), [rows[i]["target"] for i in idx], tok, cfg, ctc_head)[0]

    params = [*model.encoder.parameters(), *model.adapter.parameters()]
    params += list(ctc_head.parameters()) if ctc_head is not None else []
    return _warm_up(params, cfg.token_ctc_lr, cfg.token_ctc_steps, cfg.seed + 3, feats, cfg, loss_of, "token ctc")


def train_sft(model: SpeechLM, rows: list[dict[str, Any]], feats: list[torch.Tensor], tok: Any,
              cfg: SpeechTrainConfig, ctc_head: CTCHead | None = None) -> list[float]:  # fmt: skip
    model.train()
    params = [p for n, p in model.named_parameters() if p.requires_grad and not n.startswith("lm.")]
    params += list(ctc_head.parameters()) if ctc_head is not None else []
    opt = torch.optim.AdamW(params, lr=cfg.sft_lr, weight_decay=0.01)
    rng = random.Random(cfg.seed + 1)
    toks = [prompt_tokens(tok, r) for r in rows]
    table = model.lm.tok_embeddings.weight
    losses = []
    for step in range(cfg.sft_steps):
        _cosine(opt, cfg.sft_lr, step, cfg.sft_steps, cfg.warmup)
        idx, x, n = _batch(feats, cfg, rng)
        h, h_len = model.encoder(x, n)
        aux, logits = _ctc_terms(model, h, h_len, [rows[i]["target"] for i in idx], tok, cfg, ctc_head)
        speech = model.adapter(h, h_len) if logits is None else model.adapter.collapse(*logits, table)
        loss = model.loss([toks[i][0] for i in idx], x, n, [toks[i][1] for i in idx], [toks[i][2] for i in idx],
                          speech=speech)  # fmt: skip
        total = loss + aux
        _update(opt, params, total)
        losses.append(loss.item())
        if step % 50 == 0:
            log.info("speech sft step %d loss %.3f (with ctc %.3f)", step, loss.item(), total.item())
    return losses


def _cosine(opt: torch.optim.Optimizer, peak: float, step: int, total: int, warmup: int | None = None) -> None:
    warm = max(1, total // 20 if warmup is None else min(warmup, total - 1))
    lr = (
        peak * (step + 1) / warm
        if step < warm
        else peak * 0.5 * (1 + math.cos(math.pi * (step - warm) / (total - warm)))
    )
    for g in opt.param_groups:
        g["lr"] = lr


# ---------------------------------------------------------------- evaluation


def normalize_text(text: str) -> str:
    """Lowercase, punctuation removed, spaces collapsed: WER counts words, not spelling of punctuation."""
    import re

    return " ".join(re.sub(r"[^\w\s']", " ", text.lower()).split())


def transcribe(model: SpeechLM, rows: list[dict[str, Any]], feats: list[torch.Tensor], tok: Any,
               batch_size: int = 16) -> list[str]:  # fmt: skip
    model.eval()
    out: list[str] = []
    for s in range(0, len(rows), batch_size):
        chunk = list(range(s, min(s + batch_size, len(rows))))
        x, n = pad_features([feats[i] for i in chunk])
        toks = [prompt_tokens(tok, rows[i]) for i in chunk]
        ids = model.transcribe([t[0] for t in toks], x, n, [t[1] for t in toks], max_new_tokens=40,
                               stop_ids=[end_of_turn(tok)])  # fmt: skip
        out.extend(tok.decode(i).strip() for i in ids)
    return out


def wer_with_ci(refs: list[str], hyps: list[str], seed: int = 0, n_boot: int = 1000) -> dict[str, float]:
    """Corpus WER (errors / reference words, jiwer) and a 95% bootstrap CI over utterances."""
    import jiwer
    import numpy as np

    refs_n, hyps_n = [normalize_text(r) or "<empty>" for r in refs], [normalize_text(h) for h in hyps]
    errors = np.array([jiwer.process_words(r, h).wer * len(r.split()) if h else len(r.split())
                       for r, h in zip(refs_n, hyps_n, strict=True)])  # fmt: skip
    words = np.array([len(r.split()) for r in refs_n])
    rng = np.random.default_rng(seed)
    boots = []
    for _ in range(n_boot):
        i = rng.integers(0, len(refs), len(refs))
        boots.append(errors[i].sum() / words[i].sum())
    lo, hi = np.percentile(boots, [2.5, 97.5])
    return {"wer": float(errors.sum() / words.sum()), "ci_low": float(lo), "ci_high": float(hi), "n": len(refs)}


def evaluate(model: SpeechLM, rows: list[dict[str, Any]], feats: list[torch.Tensor], tok: Any,
             seed: int) -> tuple[dict[str, Any], list[str]]:  # fmt: skip
    hyps = transcribe(model, rows, feats, tok)
    asr = [i for i, r in enumerate(rows) if r["task"] == "asr"]
    res: dict[str, Any] = {}
    if asr:
        res["asr"] = wer_with_ci([rows[i]["target"] for i in asr], [hyps[i] for i in asr], seed)
        for v in sorted({rows[i]["variant"] for i in asr}):
            sel = [i for i in asr if rows[i]["variant"] == v]
            res[f"asr/{v}"] = wer_with_ci([rows[i]["target"] for i in sel], [hyps[i] for i in sel], seed)
    ast = [i for i, r in enumerate(rows) if r["task"] == "ast"]
    if ast:
        import sacrebleu

        res["ast_bleu"] = sacrebleu.corpus_bleu([hyps[i] for i in ast], [[rows[i]["target"] for i in ast]]).score
    return res, hyps


# ---------------------------------------------------------------- the stage


def build_speech_model(cfg: SpeechTrainConfig, lm: Transformer) -> SpeechLM:
    torch.manual_seed(cfg.seed)
    enc = ConformerEncoder(conformer_preset(cfg.encoder, utterance_norm=cfg.utterance_norm))
    token_vocab = lm.cfg.vocab_size if cfg.adapter_output == "tokens" else 0
    adapter = SpeechAdapter(ADAPTER_PRESETS[_adapter_name(cfg.adapter)], enc.cfg.dim, lm.cfg.dim, token_vocab)
    return SpeechLM(lm, enc, adapter)


def _adapter_name(name: str) -> str:
    if name not in ADAPTER_PRESETS:
        raise ValueError(f"speech train: adapter: unknown preset '{name}'; presets: {', '.join(ADAPTER_PRESETS)}")
    return name


@torch.no_grad()
def evaluate_token_ctc(model: SpeechLM, rows: list[dict[str, Any]], feats: list[torch.Tensor], tok: Any,
                       seed: int) -> dict[str, float]:  # fmt: skip
    """The adapter's own greedy token-CTC transcripts (what the LM is given to read): WER [95% CI]."""
    model.eval()
    hyps: list[str] = []
    for s in range(0, len(rows), 32):
        x, n = pad_features(feats[s : s + 32])
        logits, lengths = model.adapter.token_logits(*model.encoder(x, n))
        hyps += [tok.decode(ids).strip() for ids in best_path(logits, lengths, blank=logits.shape[-1] - 1)]
    return wer_with_ci([r["target"] for r in rows], hyps, seed)


def train_speech(cfg: SpeechTrainConfig, out: Path) -> dict[str, Any]:
    from safetensors.torch import save_file

    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    start = time.perf_counter()
    train = [r for r in read_examples(cfg.data, "train") if r["task"] in cfg.tasks]
    if not train:
        raise ValueError(f"speech train: {cfg.data} has no train examples for tasks {cfg.tasks}")
    tests = {s: read_examples(cfg.data, s)[: cfg.max_eval] for s in ("test_sentences", "test_voices")}
    feats = load_features(train)
    test_feats = {s: load_features(r) for s, r in tests.items()}
    t_feats = time.perf_counter()
    prompts = tuple(sorted({r["prompt"] for r in train if r["prompt"] and r["task"] == "asr"}))
    lm, tok = load_lm(cfg, sorted({r["target"] for r in train} | {r["prompt"] for r in train if r["prompt"]}), prompts)
    t_lm = time.perf_counter()
    model = build_speech_model(cfg, lm)
    untrained = {s: evaluate(model, tests[s], test_feats[s], tok, cfg.seed)[0] for s in tests}
    t0 = time.perf_counter()
    pre_losses = pretrain_bestrq(model.encoder, feats, cfg) if cfg.pretrain_steps else []
    t_pre = time.perf_counter()
    use_ctc = bool(cfg.ctc_weight or cfg.ctc_steps)
    ctc_head = CTCHead(model.encoder.cfg.dim, cfg.ctc_upsample) if use_ctc else None
    ctc_losses = pretrain_ctc(model.encoder, ctc_head, train, feats, cfg) if ctc_head and cfg.ctc_steps else []
    t_ctc = time.perf_counter()
    ctc_eval = (
        {s: evaluate_ctc(model.encoder, ctc_head, tests[s], test_feats[s], cfg) for s in tests} if ctc_head else {}
    )
    tokens = model.adapter.token_head is not None
    tok_losses = pretrain_token_ctc(model, train, feats, tok, cfg, ctc_head) if tokens and cfg.token_ctc_steps else []
    t_tok = time.perf_counter()
    sft_losses = train_sft(model, train, feats, tok, cfg, ctc_head if cfg.ctc_weight else None)
    t_sft = time.perf_counter()
    encoder_ctc = {}  # the encoder's own CTC transcripts before and after SFT: the acoustic model's share of errors
    for s in ctc_eval:
        after = evaluate_ctc(model.encoder, ctc_head, tests[s], test_feats[s], cfg)
        encoder_ctc[s] = {"after_ctc_steps": ctc_eval[s], "after_sft": after}
    adapter_ctc = {s: evaluate_token_ctc(model, tests[s], test_feats[s], tok, cfg.seed) for s in tests if tokens}
    trained, rows_out = {}, []
    for s in tests:
        trained[s], hyps = evaluate(model, tests[s], test_feats[s], tok, cfg.seed)
        rows_out += [{"id": r["id"], "split": s, "voice": r["voice"], "target": r["target"], "hypothesis": h}
                     for r, h in zip(tests[s], hyps, strict=True)]  # fmt: skip
    t_eval = time.perf_counter()
    save_file({k: v.contiguous() for k, v in model.encoder.state_dict().items()}, out / "encoder.safetensors")
    save_file({k: v.contiguous() for k, v in model.adapter.state_dict().items()}, out / "adapter.safetensors")
    if ctc_head is not None:
        save_file({k: v.contiguous() for k, v in ctc_head.state_dict().items()}, out / "ctc_head.safetensors")
    if cfg.lm == "tiny":  # a herd model folder (HF layout + tokenizer.model), so `herd generate` loads it too
        from herd.model.convert import save_hf
        from herd.tokenizer import save_ranks

        save_hf(lm, out / "lm")
        save_ranks(tok.ranks, out / "lm" / "tokenizer.model")
    (out / "speech_config.json").write_text(json.dumps(asdict(cfg), indent=2) + "\n")
    with open(out / "transcripts.jsonl", "w", encoding="utf-8") as f:
        f.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in rows_out)
    metrics = {
        "train_utterances": len(train), "threads": torch.get_num_threads(),
        "bestrq_loss_first_last": [_avg(pre_losses[:20]), _avg(pre_losses[-20:])],
        "ctc_loss_first_last": [_avg(ctc_losses[:20]), _avg(ctc_losses[-20:])],
        "token_ctc_loss_first_last": [_avg(tok_losses[:20]), _avg(tok_losses[-20:])],
        "sft_loss_first_last": [_avg(sft_losses[:20]), _avg(sft_losses[-20:])],
        "untrained": untrained, "trained": trained, "encoder_ctc": encoder_ctc, "adapter_token_ctc": adapter_ctc,
        "seconds": {"features": round(t_feats - start, 1), "lm": round(t_lm - t_feats, 1),
                    "bestrq": round(t_pre - t0, 1), "ctc": round(t_ctc - t_pre, 1),
                    "token_ctc": round(t_tok - t_ctc, 1), "sft": round(t_sft - t_tok, 1),
                    "eval": round(t_eval - t_sft, 1), "total": round(time.perf_counter() - start, 1)},
    }  # fmt: skip
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    return {"train_utterances": len(train), **{f"wer_{s}": trained[s].get("asr", {}).get("wer") for s in tests},
            **{f"wer_untrained_{s}": untrained[s].get("asr", {}).get("wer") for s in tests},
            "asr": {s: {"trained": trained[s].get("asr"), "untrained": untrained[s].get("asr")} for s in tests},
            "seconds": metrics["seconds"]}  # fmt: skip


def _avg(xs: list[float]) -> float | None:
    return round(sum(xs) / len(xs), 4) if xs else None


def run_speech_train(cfg: SpeechTrainConfig) -> Any:
    return run_fn("speech_train", [Path(cfg.data)], cfg, cfg.out, lambda tmp: train_speech(cfg, tmp))


def load_speech_train_config(path: str | Path | None, overrides: list[str] | tuple[str, ...] = ()) -> SpeechTrainConfig:
    return load_config(SpeechTrainConfig, path, overrides)
