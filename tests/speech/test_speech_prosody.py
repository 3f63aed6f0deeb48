"""Prosody model [P §8 speech generation]: YIN against signals of known F0, espeak-ng targets against
synth.synthesize_phonemes, metrics on hand-worked numbers, determinism, and playback that follows the
requested durations."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

pytest.importorskip("espeakng_loader")

from herd.speech import prosody as P
from herd.speech.synth import Voice, synthesize_phonemes


@pytest.mark.parametrize("f0", [82.0, 110.0, 155.5, 220.5, 333.0])
def test_yin_recovers_known_f0(f0):
    sr = 22_050
    t = np.arange(sr) / sr
    x = 0.3 * sum(np.sin(2 * np.pi * f0 * k * t + k) / k for k in range(1, 8))  # a voiced harmonic tone
    times, est = P.yin_f0(x, sr)
    assert (est > 0).all() and np.abs(est - f0).max() < 0.05 * f0 / 100  # within 0.05%
    assert times[0] > 0 and np.all(np.diff(times) > 0)


def test_yin_calls_noise_and_silence_unvoiced():
    sr = 22_050
    noise = np.random.default_rng(0).standard_normal(sr) * 0.3
    assert (P.yin_f0(noise, sr)[1] > 0).mean() < 0.02
    assert (P.yin_f0(np.zeros(sr), sr)[1] == 0).all()


def test_targets_match_synthesize_phonemes_and_align_words():
    text = "Carrots are a good source of which vitamin?"
    _, _, events = P.speak_events(text, Voice())
    phones = P.phones_by_word(events, P.word_starts(text))
    reference = [p for p in synthesize_phonemes(text, Voice()) if not p[0].startswith("_")]
    # espeak-ng's event times move by 1 ms between calls of one process (seen: 0.296 vs 0.297 s): 2 ms tolerance
    close = [(n, pytest.approx(s, abs=0.002), pytest.approx(e, abs=0.002)) for n, s, e in reference]
    assert [(p.name, p.start, p.end) for p in phones] == close
    words = text.split()
    by_word = {w: "".join(p.name for p in phones if p.word == i) for i, w in enumerate(words)}
    assert by_word["Carrots"].startswith("k") and by_word["vitamin?"].startswith("v")
    assert by_word["which"] == ""  # espeak-ng speaks "of which" as one word event: its phones go to "of"
    utt = P.build_utterance(text, Voice())
    assert utt.words[-1] == "vitamin" and len(utt.dur_ms) == len(utt.phones) == len(utt.f0_hz)
    assert all(d > 0 for d in utt.dur_ms) and np.nanmedian(utt.f0_hz) == pytest.approx(100, rel=0.3)


def test_metrics_on_hand_worked_numbers():
    assert P.duration_mae_ms(torch.tensor([10.0, 20.0]), torch.tensor([12.0, 17.0])) == pytest.approx(2.5)
    rmse = P.f0_rmse_cents(torch.tensor([200.0, 100.0, 50.0]), torch.tensor([100.0, 100.0, math.nan]))
    assert rmse == pytest.approx(math.sqrt(1200**2 / 2))  # one octave off, one exact, one unvoiced skipped
    errs = [torch.tensor([1.0, -3.0]), torch.tensor([2.0])]  # per sentence
    value, lo, hi = P.bootstrap_ci(errs, "mae")
    assert value == pytest.approx(2.0) and lo <= value <= hi  # pooled over phones: (1 + 3 + 2) / 3
    value, _, _ = P.bootstrap_ci(errs, "rmse")
    assert value == pytest.approx(math.sqrt(14 / 3))
    d = P.paired_bootstrap(errs, [torch.tensor([0.0, 0.0]), torch.tensor([1.0])], "mae")
    assert d["diff"] == pytest.approx(2.0 - 1 / 3)


def _toy_batch(n: int = 64) -> P.Batch:
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, 5, (n, 3), generator=g)
    log_dur = torch.log(40 + 20 * ids[:, 1].float())
    f0 = torch.where(ids[:, 1] % 2 == 0, torch.full((n,), 0.2), torch.full((n,), math.nan))
    return P.Batch(
        ids, torch.rand(n, 4, generator=g), torch.randn(n, 8, generator=g), log_dur, f0, torch.arange(n) // 8
    )


def test_baseline_is_the_mean_per_phone_and_training_is_deterministic():
    b = _toy_batch()
    dur, f0 = P.baseline_predict(P.mean_per_phone(b), b)
    assert torch.allclose(dur, 40 + 20 * b.ids[:, 1].float(), rtol=1e-5)  # durations depend only on the phone
    assert torch.allclose(f0[b.ids[:, 1] % 2 == 0], torch.tensor(100 * 2**0.2))
    m1, m2 = (P.fit_prosody(b, 5, True, seed=0, steps=30, lr=1e-2) for _ in range(2))
    assert all(torch.equal(p, q) for p, q in zip(m1.state_dict().values(), m2.state_dict().values(), strict=True))
    pred_dur, _ = P.predict(P.fit_prosody(b, 5, False, seed=0, steps=200, lr=2e-2), b)
    assert P.duration_mae_ms(pred_dur, torch.exp(b.log_dur)) < 3.0  # learns a phone → duration table


# Run in a fresh interpreter: espeak-ng's timing depends on what the process spoke before. Measured: the same
# call repeated in one process alternates between two timings ~8.7 ms apart (one pitch period at ~115 Hz: 44,508
# vs 44,702 samples), whatever was spoken in between; Terminate + re-initialize and espeak_ng_SetRandSeed do not
# reset it. After the data tests ran in this process, one word came out 12.7% off its request (bound 10%); alone,
# the sequence of calls (so the result) is fixed. The bound stays; the history is what the fresh process removes.
_DURATIONS_SCRIPT = """
import json
import numpy as np
from herd.speech import prosody as P
from herd.speech.synth import Voice
text = "People worry about things all the time."
utt = P.build_utterance(text, Voice())
factors = [1.5, 0.7, 1.3, 0.8, 1.6, 1.0, 0.75]
dur = [d * factors[w] for d, w in zip(utt.dur_ms, utt.word_of, strict=True)]
wav, sr, phones = P.speak_with_prosody(text.split(), *P.word_targets(utt, dur, utt.f0_hz), Voice())
err = P.playback_errors(utt, dur, phones)
print(json.dumps({**{k: err[k] for k in ("same_phones", "word_dur_spoken_ms", "word_dur_pred_ms", "phone_corr")},
                  "seconds": len(wav) / sr, "last_end": phones[-1].end}, default=float))
"""


def _fresh_process(script: str) -> dict:
    """The JSON a script prints when run by a new Python (this repository first on its path)."""
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    import herd

    root = str(Path(herd.__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([root, os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_playback_follows_requested_durations():
    """Stretch and squeeze words through SSML in closed loop: each spoken word lasts its requested duration
    within 10%, and per phone the spoken durations track the requested ones (correlation > 0.9)."""
    err = _fresh_process(_DURATIONS_SCRIPT)
    assert err["same_phones"]
    spoken, want = np.array(err["word_dur_spoken_ms"]), np.array(err["word_dur_pred_ms"])
    assert np.all(np.abs(spoken - want) <= 0.10 * want), (spoken, want)
    assert err["phone_corr"] > 0.9
    assert err["seconds"] == pytest.approx(err["last_end"], abs=0.5)


def test_playback_follows_requested_pitch():
    """Raise and lower word pitch by up to ±30%: after closed-loop calibration the spoken word F0 (YIN) is
    within 100 cents RMS of the request (measured 64; 319 when speaking without pitch control)."""
    text = "People worry about things all the time."
    words = text.split()
    utt = P.build_utterance(text, Voice())
    dur, f0 = P.word_targets(utt, utt.dur_ms, utt.f0_hz)
    target = [f * k for f, k in zip(f0, [1.25, 0.85, 1.2, 0.9, 1.3, 1.0, 0.8], strict=True)]

    def rms_cents(rounds: int) -> float:
        wav, sr, phones = P.speak_with_prosody(words, dur, target, Voice(), rounds=rounds)
        times, track = P.yin_f0(wav / 32768.0, sr)
        got = P.word_targets(P._as_utt(words, phones), [1.0] * len(phones), P.phone_f0(phones, times, track))[1]
        err = [1200 * np.log2(g / w) for g, w in zip(got, target, strict=True) if g == g and w == w]
        return float(np.sqrt(np.mean(np.square(err))))

    assert rms_cents(3) < 100 < rms_cents(0)
