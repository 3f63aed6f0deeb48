"""The speech encoder's audio front end: 80-dim log-mel features, then stride-4 stacking and a linear
projection that turn 10 ms frames into 40 ms ones [P §8.1].

Pure torch (torchaudio does not load with the local torch; platform-notes). The filter bank is the
Slaney-style mel scale and normalization used by Whisper's and librosa's front ends, so
transformers' numpy WhisperFeatureExtractor is a reference nobody here wrote (tests/speech).

    feats = LogMel()(wav)                 # (B, samples) at 16 kHz → (B, T, 80), T = samples // 160
    x = FrameStacker(80, 4, d)(feats)     # (B, T // 4, d): 40 ms frames
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

SAMPLE_RATE = 16_000
N_MELS = 80  # [P §8.1]: 80-dimensional mel-spectrogram features
N_FFT = 400  # 25 ms window
HOP = 160  # 10 ms hop: stacking 4 gives the paper's 40 ms frames


def hz_to_mel(f: Tensor) -> Tensor:
    """Slaney's mel scale: linear below 1 kHz (3 bins per 200 Hz), logarithmic above."""
    f_sp, min_log_hz, logstep = 200.0 / 3, 1000.0, math.log(6.4) / 27.0
    linear = f / f_sp
    return torch.where(f >= min_log_hz, min_log_hz / f_sp + torch.log(f / min_log_hz) / logstep, linear)


def mel_to_hz(m: Tensor) -> Tensor:
    f_sp, min_log_hz, logstep = 200.0 / 3, 1000.0, math.log(6.4) / 27.0
    min_log_mel = min_log_hz / f_sp
    return torch.where(m >= min_log_mel, min_log_hz * torch.exp(logstep * (m - min_log_mel)), f_sp * m)


def mel_filter_bank(
    n_freqs: int = N_FFT // 2 + 1, n_mels: int = N_MELS, sample_rate: int = SAMPLE_RATE, f_max: float | None = None
) -> Tensor:
    """Triangular filters (n_freqs, n_mels), area-normalized (Slaney), between 0 Hz and f_max."""
    f_max = sample_rate / 2 if f_max is None else f_max
    fft_freqs = torch.linspace(0, sample_rate / 2, n_freqs, dtype=torch.float64)
    mel_edges = torch.linspace(0.0, float(hz_to_mel(torch.tensor(f_max, dtype=torch.float64))), n_mels + 2,
                               dtype=torch.float64)  # fmt: skip
    hz_edges = mel_to_hz(mel_edges)  # (n_mels + 2,)
    width = hz_edges.diff()  # (n_mels + 1,)
    slopes = hz_edges[None, :] - fft_freqs[:, None]  # (n_freqs, n_mels + 2)
    down = -slopes[:, :-2] / width[:-1]
    up = slopes[:, 2:] / width[1:]
    fb = torch.clamp(torch.minimum(down, up), min=0.0)
    return fb * (2.0 / (hz_edges[2:] - hz_edges[:-2]))  # Slaney: each filter has unit area (float64)


class LogMel(nn.Module):
    """Waveform (B, S) → log10 mel power (B, T, n_mels), T = S // hop (the last centered frame is dropped,
    so frames tile the signal exactly).

    `whisper_norm` applies Whisper's dynamic-range clamp (max − 8) and affine scaling ((x + 4) / 4): it
    keeps the features near unit scale, which the encoder likes, and is what the reference computes.
    """

    def __init__(
        self, n_mels: int = N_MELS, sample_rate: int = SAMPLE_RATE, n_fft: int = N_FFT, hop: int = HOP,
        whisper_norm: bool = True,
    ) -> None:  # fmt: skip
        super().__init__()
        self.n_fft, self.hop, self.whisper_norm = n_fft, hop, whisper_norm
        # Periodic Hann, as numpy references and torch.stft default to.
        self.register_buffer("window", torch.hann_window(n_fft, periodic=True, dtype=torch.float64), persistent=False)
        self.register_buffer("filters", mel_filter_bank(n_fft // 2 + 1, n_mels, sample_rate), persistent=False)

    def forward(self, wav: Tensor) -> Tensor:
        x = wav if wav.dtype == torch.float64 else wav.float()  # float64 in: parity tests at 1e-9
        spec = torch.stft(x, self.n_fft, self.hop, window=self.window.to(x.dtype), center=True,
                          pad_mode="reflect", return_complex=True)  # fmt: skip  # (B, F, T + 1)
        power = spec.abs() ** 2
        mel = torch.einsum("bft,fm->btm", power[..., :-1], self.filters.to(x.dtype))  # (B, T, n_mels)
        logmel = torch.clamp(mel, min=1e-10).log10()
        if not self.whisper_norm:
            return logmel
        peak = logmel.amax(dim=(1, 2), keepdim=True)
        return (torch.maximum(logmel, peak - 8.0) + 4.0) / 4.0


def normalize_features(feats: Tensor, n_frames: Tensor) -> Tensor:
    """Per utterance and mel bin, zero mean and unit variance over its real frames (padding ignored)."""
    keep = (torch.arange(feats.shape[1], device=feats.device)[None] < n_frames[:, None]).to(feats.dtype)[..., None]
    count = keep.sum(1, keepdim=True).clamp(min=1)
    mean = (feats * keep).sum(1, keepdim=True) / count
    var = (((feats - mean) * keep) ** 2).sum(1, keepdim=True) / count
    return (feats - mean) / (var + 1e-5).sqrt() * keep


def num_frames(n_samples: int, hop: int = HOP) -> int:
    return n_samples // hop


class FrameStacker(nn.Module):
    """Stack `stride` consecutive frames and project them: (B, T, n_mels) → (B, T // stride, dim) [P §8.1].

    A trailing partial group is dropped: with stride 4 and a 10 ms hop, a 40 ms frame covers whole input.
    """

    def __init__(self, n_mels: int, stride: int, dim: int) -> None:
        super().__init__()
        self.stride = stride
        self.proj = nn.Linear(n_mels * stride, dim)

    def forward(self, feats: Tensor) -> Tensor:
        return self.proj(stack_frames(feats, self.stride))


def stack_frames(feats: Tensor, stride: int) -> Tensor:
    """(B, T, C) → (B, T // stride, stride·C): frames t·stride … t·stride + stride − 1, in time order."""
    B, T, C = feats.shape
    T4 = T // stride
    return feats[:, : T4 * stride].reshape(B, T4, stride * C)
