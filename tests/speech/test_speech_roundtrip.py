"""Text → espeak-ng speech → transcript through a tiny speech model trained here in seconds, and the same
model behind `herd chat MODEL --audio FILE.wav` and the recipe's `speech` stage and report section."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("espeakng_loader")
pytest.importorskip("jiwer")

import soundfile as sf
import torch

from herd.speech.data import ASR_PROMPT
from herd.speech.synth import Voice, synthesize
from herd.speech.train import SpeechTrainConfig, TinyLMConfig, run_speech_train, wer_with_ci

pytestmark = pytest.mark.slow  # trains a tiny speech model: ~40 s of CPU

# Four short sentences; the tiny LM knows all four, so the audio has to say which one was spoken.
SENTENCES = ["red cats sleep", "blue dogs run", "green birds sing", "old fish swim"]
TRAIN = [Voice("en", "m1", rate, pitch) for rate in (160, 190) for pitch in (40, 60)]
HELD_OUT = Voice("en", "m1", 175, 50)  # a rate and pitch between the trained ones, never trained on


def _write_data(folder) -> None:
    """A fixed small speech data folder in the data stage's format: 16 train and 4 held-out utterances."""
    (folder / "audio").mkdir(parents=True)
    rows = []
    for i, text in enumerate(SENTENCES):
        for j, voice in enumerate([*TRAIN, HELD_OUT]):
            split = "train" if voice in TRAIN else "test_sentences"
            path = f"audio/{i}-{j}.flac"
            sf.write(folder / path, synthesize(text, voice), 16_000, subtype="PCM_16")
            prompt = ASR_PROMPT.format(language="English")
            rows.append({"id": f"{i}-{j}", "split": split, "task": "asr", "prompt": prompt, "target": text,
                         "audio": path, "voice": voice.key(), "variant": voice.variant})  # fmt: skip
    rows += [{**r, "split": "test_voices"} for r in rows if r["split"] == "test_sentences"]
    (folder / "examples.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("roundtrip")
    _write_data(root / "data")
    # The encoder settings the bundled recipe uses (per-utterance normalization, 2 CTC labels per frame, a CTC
    # warm-up) made this 16-utterance model worse, not better (measured: WER 0.58, and 0.83 with 200 CTC steps,
    # on the held-out rendering; docs/speech.md), so the test keeps the settings it was measured with.
    cfg = SpeechTrainConfig(data=str(root / "data"), out=str(root / "model"), pretrain_steps=0, sft_steps=400,
                            sft_lr=3e-3, warmup=10, batch_size=8, tasks=["asr"], ctc_weight=0.3,
                            utterance_norm=False, ctc_upsample=1,
                            tiny_lm=TinyLMConfig(steps=200, vocab_size=600, dim=64, n_heads=2))  # fmt: skip
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the float summation order, hence the trajectory, follows the thread count
    try:
        counts = run_speech_train(cfg).counts
    finally:
        torch.set_num_threads(threads)
    return root, counts


def test_round_trip_text_to_speech_to_transcript(trained, tmp_path):
    from herd.speech.infer import load_speech_model, respond

    root, counts = trained
    model, tok = load_speech_model(root / "model")
    hyps = [respond(model, tok, torch.from_numpy(synthesize(t, HELD_OUT))) for t in SENTENCES]
    res = wer_with_ci(SENTENCES, hyps)
    # A rate and pitch never trained on. Measured: 0.25 (3 of 12 words wrong) after 400 SFT steps when this
    # file runs alone, 0.42 after the other speech tests ran in the same process: espeak-ng's output is not
    # bit-stable across calls (the same text and voice twice give 13,234 then 13,233 samples), and a model
    # trained in seconds on 16 utterances feels it. So: at most half the words, against 1.25 untrained.
    assert res["wer"] <= 0.5, hyps
    assert counts["wer_untrained_test_sentences"] >= 0.75  # the same model before training cannot do it
    assert counts["wer_test_sentences"] <= 0.5  # the stage's own evaluation


def test_chat_audio_transcribes_a_wav(trained, tmp_path, capsys):
    from herd.cli.main import main

    root, _ = trained
    wav = tmp_path / "prompt.wav"
    sf.write(wav, synthesize(SENTENCES[0], HELD_OUT), 16_000)
    assert main(["chat", str(root / "model"), "--audio", str(wav)]) == 0
    # The chat path prints the model's own transcript of the file: the same as `respond` on the same samples.
    # (How well the model transcribes is the round-trip test's job; espeak-ng's output for one sentence
    # varies with the process's history, so one sentence's WER here measured 0.0 in one run and 1.0 in another.)
    from herd.speech.infer import load_speech_model, respond

    model, tok = load_speech_model(root / "model")
    audio, _ = sf.read(wav, dtype="float32")
    expected = respond(model, tok, torch.from_numpy(audio)).strip()
    assert capsys.readouterr().out.strip() == expected
    sf.write(tmp_path / "8k.wav", synthesize(SENTENCES[0], HELD_OUT)[::2], 8_000)
    assert main(["chat", str(root / "model"), "--audio", str(tmp_path / "8k.wav")]) == 2
    assert "8k.wav: sample rate 8000 Hz" in capsys.readouterr().err  # one line naming the file
