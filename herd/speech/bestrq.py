"""BEST-RQ: self-supervised pre-training of the speech encoder with a random-projection quantizer [P §8.2].

Targets come from the un-masked features: 4 stacked 10 ms log-mel frames (a 320-dim vector) are
projected to 16 dims by a frozen random matrix, l2-normalized, and matched to the nearest entry of a
frozen random codebook of 8,192 l2-normalized vectors, for each of 16 codebooks [P §8.2]. The encoder
sees the same features with spans of 32 (40 ms) frames replaced by noise, each frame starting a span with
probability 2.5% [P §8.2], and predicts every codebook's index at the masked frames (cross-entropy).

Nothing in the quantizer trains: a seed fixes it, so targets are a function of (features, seed).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from herd.speech.frontend import normalize_features, stack_frames


@dataclass(frozen=True)
class BestRQConfig:
    code_dim: int = 16  # [P §8.2]: stacked frames projected to 16 dims
    n_codebooks: int = 16  # [P §8.2]
    codebook_size: int = 8192  # [P §8.2]
    mask_prob: float = 0.025  # [P §8.2]: probability that a frame starts a masked span
    mask_span: int = 32  # [P §8.2]: frames per span (40 ms encoder frames here [D])
    noise_std: float = 0.1  # masked features become N(0, 0.1²) noise (BEST-RQ paper)
    seed: int = 0


class RandomProjectionQuantizer(nn.Module):
    """Frozen random projections (n_codebooks, stack·n_mels, code_dim) and codebooks
    (n_codebooks, codebook_size, code_dim), both drawn from `seed`; no parameters."""

    def __init__(self, in_dim: int, cfg: BestRQConfig) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(cfg.seed)
        proj = torch.empty(cfg.n_codebooks, in_dim, cfg.code_dim)
        bound = (6.0 / (in_dim + cfg.code_dim)) ** 0.5  # Xavier-uniform, as BEST-RQ initializes it
        proj.uniform_(-bound, bound, generator=g)
        codes = torch.randn(cfg.n_codebooks, cfg.codebook_size, cfg.code_dim, generator=g)
        self.register_buffer("projection", proj)
        self.register_buffer("codebooks", F.normalize(codes, dim=-1))

    @torch.no_grad()
    def forward(self, stacked: Tensor) -> Tensor:
        """stacked (B, T, in_dim), normalized features → code indices (B, T, n_codebooks)."""
        z = torch.einsum("btd,cdk->bctk", stacked.float(), self.projection)  # (B, C, T, code_dim)
        z = F.normalize(z, dim=-1)
        # Nearest l2-normalized code = largest cosine similarity.
        sim = torch.einsum("bctk,cnk->bctn", z, self.codebooks)  # (B, C, T, codebook_size)
        return sim.argmax(-1).permute(0, 2, 1)  # (B, T, C)


def span_mask(n_frames: Tensor, T: int, prob: float, span: int, generator: torch.Generator | None = None) -> Tensor:
    """(B, T) bool: each real frame starts a masked span of `span` frames with probability `prob`."""
    B = n_frames.shape[0]
    real = torch.arange(T)[None] < n_frames.cpu()[:, None]
    starts = (torch.rand(B, T, generator=generator) < prob) & real
    # A frame is masked when any of the `span` frames up to it started a span: a causal window sum.
    covered = F.conv1d(F.pad(starts.float()[:, None], (span - 1, 0)), torch.ones(1, 1, span))[:, 0] > 0
    return (covered & real).to(n_frames.device)


class BestRQ(nn.Module):
    """The encoder, the frozen quantizer and one softmax head per codebook; `forward` returns the loss."""

    def __init__(self, encoder: nn.Module, cfg: BestRQConfig) -> None:
        super().__init__()
        self.cfg, self.encoder = cfg, encoder
        enc = encoder.cfg
        self.quantizer = RandomProjectionQuantizer(enc.stack * enc.n_mels, cfg)
        self.heads = nn.Linear(enc.dim, cfg.n_codebooks * cfg.codebook_size)

    def targets(self, feats: Tensor, n_frames: Tensor) -> Tensor:
        """(B, T // stack, n_codebooks) code indices of the unmasked, normalized features."""
        return self.quantizer(stack_frames(normalize_features(feats, n_frames), self.encoder.cfg.stack))

    def forward(self, feats: Tensor, n_frames: Tensor, generator: torch.Generator | None = None) -> dict[str, Tensor]:
        stack = self.encoder.cfg.stack
        lengths = torch.div(n_frames, stack, rounding_mode="floor")
        T = feats.shape[1] // stack
        targets = self.targets(feats, n_frames)  # (B, T, C)
        mask = span_mask(lengths, T, self.cfg.mask_prob, self.cfg.mask_span, generator)  # (B, T)
        noise = torch.randn(feats.shape, generator=generator).to(feats) * self.cfg.noise_std
        frame_mask = mask.repeat_interleave(stack, dim=1)[..., None]  # (B, T·stack, 1): 10 ms frames
        x = normalize_features(feats, n_frames)
        x = torch.cat([torch.where(frame_mask, noise[:, : T * stack], x[:, : T * stack]), x[:, T * stack :]], 1)
        h, _ = self.encoder(x, n_frames)  # (B, T, dim)
        logits = self.heads(h[mask]).view(-1, self.cfg.n_codebooks, self.cfg.codebook_size)  # (N, C, V)
        loss = F.cross_entropy(logits.flatten(0, 1), targets[mask].flatten())
        acc = (logits.argmax(-1) == targets[mask]).float().mean()
        return {"loss": loss, "accuracy": acc, "masked": mask.sum()}
