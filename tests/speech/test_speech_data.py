"""The espeak-ng speech data stage: manifest counts, dropped reasons, splits, audio files."""

from __future__ import annotations

import json

import pytest

from herd.core.manifest import Manifest
from herd.speech.data import SpeechDataConfig, read_examples, run_speech_data

sf = pytest.importorskip("soundfile")
pytest.importorskip("espeakng_loader")
pytest.importorskip("chatterbot_corpus")


def _cfg(tmp_path, **kw) -> SpeechDataConfig:
    return SpeechDataConfig(out=str(tmp_path / "data"), languages=["english", "german"], max_sentences=10,
                            voices_per_sentence=2, test_fraction=0.3, dialogue=2, **kw)  # fmt: skip


def test_speech_data_stage_writes_examples_manifest_and_dropped(tmp_path):
    parallel = tmp_path / "parallel.jsonl"
    rows = [
        {"source": "Good morning, my friend.", "target": "Guten Morgen, mein Freund.", "source_language": "en",
         "target_language": "de"},
        {"source": "Hallo Welt, wie geht es?", "target": "Hello world, how is it going?", "source_language": "xx",
         "target_language": "en"},
    ]  # fmt: skip
    parallel.write_text("".join(json.dumps(r) + "\n" for r in rows))
    m = run_speech_data(_cfg(tmp_path, parallel=str(parallel)))
    c = m.counts
    assert c["in"] == c["kept"] + sum(c["dropped"].values())
    assert c["dropped"]["unsupported_language"] == 1
    out = tmp_path / "data"
    dropped = [json.loads(line) for line in (out / "dropped" / "dropped.jsonl").read_text().splitlines()]
    assert len(dropped) == sum(c["dropped"].values()) and all(d["reason"] for d in dropped)
    assert Manifest.find(out) is not None
    ex = read_examples(out)
    assert {e["task"] for e in ex} == {"asr", "ast", "dialogue"}
    asr = [e for e in ex if e["task"] == "asr"]
    assert {e["prompt"] for e in asr} == {"Repeat after me in English:", "Repeat after me in German:"}
    ast = next(e for e in ex if e["task"] == "ast")
    assert ast["prompt"] == "Translate the following sentence into German:" and ast["target"].startswith("Guten")
    # Held-out voices appear only in test_voices; test sentences never in train.
    assert {e["variant"] for e in ex if e["split"] == "test_voices"} <= {"m7", "f4"}
    assert not {e["variant"] for e in ex if e["split"] == "train"} & {"m7", "f4"}
    train_text = {e["text"] for e in ex if e["split"] == "train"}
    assert not train_text & {e["text"] for e in ex if e["split"] != "train"}
    wav, sr = sf.read(ex[0]["audio"])
    assert sr == 16000 and abs(len(wav) / sr - ex[0]["seconds"]) < 1e-3
    # A rerun with the same config and inputs is skipped (the manifest matches).
    assert run_speech_data(_cfg(tmp_path, parallel=str(parallel))).key == m.key


def test_bad_parallel_line_names_file_and_line(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(
        '{"source": "a b", "target": "c d", "source_language": "en", "target_language": "de"}\n{"source": 1}\n'
    )
    with pytest.raises(ValueError, match=r"bad.jsonl:2: missing field 'target'"):
        run_speech_data(SpeechDataConfig(out=str(tmp_path / "d"), max_sentences=1, parallel=str(bad)))


def test_max_vocab_keeps_sentences_of_the_most_frequent_words(tmp_path):
    """The smaller-vocabulary task: every kept sentence uses only the N most frequent words; the rest are
    dropped as rare_word, counted in the manifest; max_sentences counts sentences kept."""
    from herd.speech.data import top_words, words_of

    cfg = SpeechDataConfig(out=str(tmp_path / "v"), max_sentences=6, voices_per_sentence=1, max_vocab=60)
    vocab = top_words(cfg)["en"]
    assert len(vocab) == 60 and {"you", "i", "the"} <= vocab  # frequent function words are in
    c = run_speech_data(cfg).counts
    assert c["kept"] == 6 and c["dropped"]["rare_word"] > 0
    assert c["in"] == c["kept"] + sum(c["dropped"].values())
    for e in read_examples(cfg.out):
        assert set(words_of(e["target"])) <= vocab, e["target"]


def test_word_strings_are_new_combinations_of_the_limited_words(tmp_path):
    """word_strings: random strings over the max_vocab words, the same for a seed; test strings never trained."""
    from herd.speech.data import top_words, words_of

    cfg = SpeechDataConfig(out=str(tmp_path / "w"), max_vocab=40, word_strings=30, min_words=2, max_words=4,
                           voices_per_sentence=1, test_fraction=0.3)  # fmt: skip
    c = run_speech_data(cfg).counts
    assert c["in"] == c["kept"] + sum(c["dropped"].values()) and c["kept"] >= 28  # repeats are skipped
    rows = read_examples(cfg.out)
    vocab = top_words(cfg)["en"]
    assert all(set(words_of(r["target"])) <= vocab and 2 <= len(r["target"].split()) <= 4 for r in rows)
    train = {r["target"] for r in rows if r["split"] == "train"}
    test = {r["target"] for r in rows if r["split"] == "test_sentences"}
    assert test and not train & test
    again = SpeechDataConfig(**{**cfg.__dict__, "out": str(tmp_path / "w2")})
    run_speech_data(again)
    assert [r["target"] for r in read_examples(again.out)] == [r["target"] for r in rows]
    with pytest.raises(ValueError, match="word_strings needs max_vocab"):
        run_speech_data(SpeechDataConfig(out=str(tmp_path / "x"), word_strings=3))
