"""The speech adapter and the speech-understanding model around a frozen herd LM [P §8.1, §8.3].

Adapter: a convolution (kernel 3, stride 2) turns 40 ms encoder frames into 80 ms ones, one rotary
Transformer layer (the paper's: d 3072, FFN 4096) mixes them, and a linear layer maps them into the LM's
token-embedding space. The results enter the LM as token embeddings between two new special tokens,
`<|begin_of_speech|>` and `<|end_of_speech|>` (no cross-attention, unlike vision) [P §8.1]. The LM's
weights stay frozen; the two new tokens' embeddings belong to the adapter and train with it.

    model = SpeechLM(lm, ConformerEncoder(cfg), SpeechAdapter(AdapterConfig(), cfg.dim, lm.cfg.dim))
    batch = model.embed([prefix_ids], feats, n_frames, [suffix_ids])   # spliced embeddings + where
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from herd.model import AttentionKernel, ModelConfig, Transformer
from herd.model.cache import KVCache
from herd.model.layers import TransformerBlock, rope_cos_sin, rope_inv_freq
from herd.speech.conformer import ConformerEncoder

BEGIN_OF_SPEECH = "<|begin_of_speech|>"
END_OF_SPEECH = "<|end_of_speech|>"


@dataclass(frozen=True)
class AdapterConfig:
    dim: int = 3072  # [P §8.1]
    n_heads: int = 24
    ffn_dim: int = 4096  # [P §8.1]
    kernel: int = 3  # [P §8.1]: conv kernel 3, stride 2 → 80 ms frames
    stride: int = 2
    rope_theta: float = 10_000.0


ADAPTER_PRESETS: dict[str, AdapterConfig] = {
    "tiny": AdapterConfig(dim=128, n_heads=4, ffn_dim=256),
    "small": AdapterConfig(dim=512, n_heads=8, ffn_dim=1024),
    "paper": AdapterConfig(),
}


class SpeechAdapter(nn.Module):
    """Encoder frames (B, T, enc_dim) → LM embeddings (B, ⌈T/2⌉, lm_dim), plus the two special embeddings.

    With `token_vocab` V > 0 the last layer is a token interface instead of the paper's linear map [D]: a head
    over the LM's V tokens plus a CTC blank, trained with a CTC loss on the transcript's tokens; each 80 ms frame
    whose best class is a token other than the previous frame's becomes the probability-weighted mix of the LM's
    own token embeddings (repeats and blanks dropped, as in CTC decoding), after LegoSLM (arXiv 2505.11352). A
    frozen LM too small to learn a new input space from minutes of speech then reads inputs it already knows
    (docs/speech.md).
    """

    def __init__(self, cfg: AdapterConfig, enc_dim: int, lm_dim: int, token_vocab: int = 0) -> None:
        super().__init__()
        self.cfg = cfg
        self.conv = nn.Conv1d(enc_dim, cfg.dim, cfg.kernel, stride=cfg.stride, padding=cfg.kernel // 2)
        block_cfg = ModelConfig(dim=cfg.dim, n_layers=1, n_heads=cfg.n_heads, n_kv_heads=cfg.n_heads,
                                ffn_dim=cfg.ffn_dim, vocab_size=1, rope_scaling=None)  # fmt: skip
        self.block = TransformerBlock(block_cfg, 0)  # herd's rotary pre-norm layer, run non-causally
        self.token_head = nn.Linear(cfg.dim, token_vocab + 1) if token_vocab else None  # class V: the CTC blank
        self.proj = None if token_vocab else nn.Linear(cfg.dim, lm_dim)
        # The LM only ever saw its own token embeddings (RMS ~0.02 at init, a little more once trained);
        # unnormalized adapter outputs came out ~5x larger (measured: RMS 0.35 vs 0.07), and with them and a
        # one-step warm-up the SFT loss did not move (docs/speech.md). An RMSNorm whose gain starts at the
        # LM table's RMS puts them on its scale [D].
        self.out_norm = None if token_vocab else nn.RMSNorm(lm_dim, eps=1e-6)
        self.special = nn.Parameter(torch.randn(2, lm_dim) * 0.02)  # begin/end-of-speech embeddings
        self.register_buffer("inv_freq", rope_inv_freq(cfg.dim // cfg.n_heads, cfg.rope_theta, None), persistent=False)

    @torch.no_grad()
    def match_scale(self, table: Tensor) -> None:
        """Start the output gain and the two special embeddings at the RMS of the LM's embedding table."""
        rms = table.float().pow(2).mean().sqrt().item()
        if self.out_norm is not None:
            self.out_norm.weight.fill_(rms)
        self.special.mul_(rms / self.special.float().pow(2).mean().sqrt().item())

    def out_lengths(self, lengths: Tensor) -> Tensor:
        k, s, p = self.cfg.kernel, self.cfg.stride, self.cfg.kernel // 2
        return torch.div(lengths + 2 * p - k, s, rounding_mode="floor") + 1

    def hidden(self, h: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        """The convolution and the Transformer layer: (B, ⌈T/2⌉, dim) 80 ms frames and their counts."""
        real = torch.arange(h.shape[1], device=h.device)[None, :, None] < lengths[:, None, None]
        # Zero the encoder's padded frames: the kernel of the last real 80 ms frame reaches one of them.
        x = self.conv((h * real.to(h.dtype)).transpose(1, 2)).transpose(1, 2)  # (B, T/2, d): 80 ms frames
        out_len = self.out_lengths(lengths)
        keep = torch.arange(x.shape[1], device=x.device)[None] < out_len[:, None]
        cos, sin = rope_cos_sin(self.inv_freq, torch.arange(x.shape[1], device=x.device))
        # Bidirectional over the utterance; padded frames are never keys.
        return self.block(x, cos.to(x.dtype), sin.to(x.dtype), AttentionKernel(mask=keep[:, None, None, :])), out_len

    def token_logits(self, h: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        """(B, ⌈T/2⌉, V + 1) logits over the LM's tokens and the blank (class V), with frame counts."""
        assert self.token_head is not None, "token_logits needs SpeechAdapter(..., token_vocab=V)"
        x, n = self.hidden(h, lengths)
        return self.token_head(x), n

    @staticmethod
    def collapse(logits: Tensor, lengths: Tensor, table: Tensor) -> tuple[Tensor, Tensor]:
        """One LM embedding per emitted token: frames whose best class is neither the blank nor the previous
        frame's, each the softmax over the V tokens times the LM's table (differentiable in the logits)."""
        V = table.shape[0]
        best = logits.argmax(-1)
        prev = torch.cat([torch.full_like(best[:, :1], -1), best[:, :-1]], dim=1)
        real = torch.arange(best.shape[1], device=best.device)[None] < lengths[:, None]
        emit = (best != V) & (best != prev) & real
        mixed = logits[..., :V].float().softmax(-1).to(table.dtype) @ table  # (B, S, lm_dim)
        rows = [mixed[i, emit[i]] for i in range(best.shape[0])]
        return nn.utils.rnn.pad_sequence(rows, batch_first=True), emit.sum(1)

    def forward(self, h: Tensor, lengths: Tensor, table: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """LM-space embeddings and their counts per row; `table` (the LM's embeddings) for the token interface."""
        x, out_len = self.hidden(h, lengths)
        if self.token_head is None:
            return self.out_norm(self.proj(x)), out_len  # (B, T/2, lm_dim)
        assert table is not None, "the token interface mixes the LM's embedding table: pass it"
        return self.collapse(self.token_head(x), out_len, table)


@dataclass
class SplicedBatch:
    embeds: Tensor  # (B, L, lm_dim), right-padded
    lengths: Tensor  # (B,) real positions per row
    speech_spans: list[tuple[int, int]]  # per row: [start, end) of the adapter outputs
    token_ids: Tensor  # (B, L) the text token at each position, -1 where speech or padding


class SpeechLM(nn.Module):
    """A frozen LM, a trainable Conformer encoder and adapter; text and speech in one embedding sequence."""

    def __init__(self, lm: Transformer, encoder: ConformerEncoder, adapter: SpeechAdapter) -> None:
        super().__init__()
        self.lm, self.encoder, self.adapter = lm, encoder, adapter
        for p in self.lm.parameters():
            p.requires_grad_(False)  # [P §8.3]: the LM is frozen during speech SFT
        adapter.match_scale(lm.tok_embeddings.weight)

    def train(self, mode: bool = True) -> SpeechLM:
        super().train(mode)
        self.lm.eval()  # frozen: no dropout or other train-mode behaviour
        return self

    def speech_embeddings(self, feats: Tensor, n_frames: Tensor) -> tuple[Tensor, Tensor]:
        h, lengths = self.encoder(feats, n_frames)
        return self.adapter(h, lengths, self.lm.tok_embeddings.weight)

    def embed(
        self,
        prefixes: Sequence[Sequence[int]],
        feats: Tensor,
        n_frames: Tensor,
        suffixes: Sequence[Sequence[int]],
        speech: tuple[Tensor, Tensor] | None = None,
    ) -> SplicedBatch:
        """Row i: prefix tokens, <|begin_of_speech|>, its adapter outputs, <|end_of_speech|>, suffix tokens.
        `speech` passes adapter outputs already computed (a caller that also needs the encoder's states)."""
        speech, speech_len = self.speech_embeddings(feats, n_frames) if speech is None else speech  # (B, S, lm_dim)
        table = self.lm.tok_embeddings
        rows, ids, spans = [], [], []
        for i, (pre, suf) in enumerate(zip(prefixes, suffixes, strict=True)):
            n = int(speech_len[i])
            dev = speech.device
            pre_t, suf_t = (
                torch.as_tensor(pre, dtype=torch.long, device=dev),
                torch.as_tensor(suf, dtype=torch.long, device=dev),
            )
            begin, end = self.adapter.special[0:1], self.adapter.special[1:2]
            rows.append(
                torch.cat([table(pre_t), begin.to(speech.dtype), speech[i, :n], end.to(speech.dtype), table(suf_t)])
            )
            start = len(pre) + 1
            spans.append((start, start + n))
            ids.append(torch.cat([pre_t, torch.full((n + 2,), -1, device=dev), suf_t]))
        lengths = torch.tensor([len(r) for r in rows], device=speech.device)
        embeds = nn.utils.rnn.pad_sequence(rows, batch_first=True)
        token_ids = nn.utils.rnn.pad_sequence(ids, batch_first=True, padding_value=-1)
        return SplicedBatch(embeds, lengths, spans, token_ids)

    def loss(self, prefixes, feats, n_frames, suffixes, targets: Sequence[Sequence[int]],
             speech: tuple[Tensor, Tensor] | None = None) -> Tensor:  # fmt: skip
        """Cross-entropy on the target tokens only (teacher-forced after the suffix), as SFT [P §4.3.1]."""
        full = [list(s) + list(t) for s, t in zip(suffixes, targets, strict=True)]
        batch = self.embed(prefixes, feats, n_frames, full, speech)
        logits = self.lm(batch.embeds)  # right padding: causal attention never reaches it from real tokens
        labels = torch.full(batch.token_ids.shape, -100, dtype=torch.long, device=logits.device)
        for i, t in enumerate(targets):
            end = int(batch.lengths[i])
            labels[i, end - len(t) - 1 : end - 1] = torch.as_tensor(t, device=logits.device)  # next-token
        return F.cross_entropy(logits.flatten(0, 1).float(), labels.flatten(), ignore_index=-100)

    @torch.no_grad()
    def transcribe(self, prefixes, feats, n_frames, suffixes, max_new_tokens: int = 48, stop_ids=()) -> list[list[int]]:
        """Greedy decoding after the spliced prompt (left-padded into one KV-cached batch). A row stops at a
        stop id or after as many tokens as it has 80 ms speech frames: speech does not carry more words than
        that, and a runaway repetition otherwise turns into dozens of insertions."""
        batch = self.embed(prefixes, feats, n_frames, suffixes)
        limit = self.adapter.out_lengths(self.encoder.out_lengths(n_frames)).tolist()  # 80 ms frames per row
        B, L, _ = batch.embeds.shape
        pad = L - batch.lengths
        left = torch.zeros_like(batch.embeds)
        for i in range(B):
            n = int(batch.lengths[i])
            left[i, L - n :] = batch.embeds[i, :n]
        cache = KVCache(self.lm.cfg, B, L + max_new_tokens, pad=pad, dtype=left.dtype, device=left.device)
        logits = self.lm(left, *cache.extend(L))[:, -1]
        stops = torch.tensor(list(stop_ids) or [-1], device=left.device)
        out: list[list[int]] = [[] for _ in range(B)]
        done = torch.zeros(B, dtype=torch.bool, device=left.device)
        for _ in range(max_new_tokens):
            nxt = logits.argmax(-1)
            done |= torch.isin(nxt, stops) | torch.tensor(
                [len(o) >= n for o, n in zip(out, limit, strict=True)], device=left.device
            )
            for row, tok in enumerate(nxt.tolist()):
                if not done[row]:
                    out[row].append(tok)
            if bool(done.all()):
                break
            logits = self.lm(nxt[:, None], *cache.extend(1))[:, -1]
        return out
