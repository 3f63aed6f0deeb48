"""Factuality pipeline [P §4.3.6]: planted documents, a scripted model that knows some answers and not others."""

from __future__ import annotations

import json

import pytest

from herd.posttrain.capabilities import CapabilityContext, get_capability
from herd.posttrain.capabilities.factuality import Probe, judge, make_probe, token_f1

DOC = (
    "The bridge over the river was finished in 1874 after many delays and disputes. "
    "Its main span of the bridge measures 520 feet from one pier to the other pier. "
    "Short one. "
    "The chief engineer of the bridge was James Eads from the city of Saint Louis. "
    "Workers were paid weekly and worked in teams through every long winter here."
)


@pytest.fixture
def docs(tmp_path):
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "bridge.txt").write_text(DOC)
    return folder


def test_probes_blank_a_year_number_or_name():
    probe, _ = make_probe("The bridge over the river was finished in 1874 after many delays.", "d")
    assert (probe.answer, probe.kind) == ("1874", "year") and "____" in probe.question and "1874" not in probe.question
    probe, _ = make_probe("The chief engineer of the bridge was James Eads from the city.", "d")
    assert (probe.answer, probe.kind) == ("James Eads", "name")
    assert make_probe("Short one.", "d") == (None, "sentence_too_short")
    assert make_probe("the workers were paid weekly and worked in teams through every winter.", "d") == (
        None,
        "no_answer_span",
    )
    assert make_probe("In 1874 and again in 1874 the bridge was closed for repairs by the city.", "d") == (
        None,
        "ambiguous_span",
    )


def test_judge_right_wrong_refused():
    year = Probe("?", "1874", "year", "", "d")
    name = Probe("?", "James Eads", "name", "", "d")
    assert judge("It was 1874.", year) == "correct" and judge("18745", year) == "wrong"
    assert judge("I don't know.", year) == "refused" and judge("", year) == "refused"
    assert judge("Eads, James", name) == "correct" and judge("John Roebling", name) == "wrong"
    assert token_f1("the James Eads", "James Eads") == 1.0


def test_known_kept_unknown_refused_mixed_dropped(docs, tmp_path):
    cap = get_capability(
        "factuality", {"documents": [str(docs)], "held_out_fraction": 0.0, "k": 4, "probes_per_document": 5}
    )

    def scripted(prompts, k):  # knows the year, never the name, half-knows the number
        out = []
        for p in prompts:
            q = p[-1]["content"]
            if "year" in q:
                out.append(["1874"] * k)
            elif "name" in q:
                out.append(["John Roebling"] * k)
            else:
                out.append(["520", "600", "520", "700"])
        return out

    cap.reply_fn = scripted
    ctx = CapabilityContext(policy=tmp_path, chat=None, bundle=tmp_path, seed=0)
    counts = cap.build(ctx, tmp_path / "out")
    kept = [json.loads(x) for x in (tmp_path / "out" / "sft.jsonl").read_text().splitlines()]
    by_source = {r["source"]: r for r in kept}
    assert by_source["factuality-known"]["messages"][-1]["content"] == "1874"
    refusal = by_source["factuality-refusal"]
    assert judge(refusal["messages"][-1]["content"], Probe("?", "James Eads", "name", "", "d")) == "refused"
    assert refusal["hallucinated"] == "John Roebling"
    dropped = [json.loads(x) for x in (tmp_path / "out" / "dropped" / "dropped.jsonl").read_text().splitlines()]
    assert sorted(r["reason"] for r in dropped) == ["inconsistent", "no_answer_span", "sentence_too_short"]
    prefs = [json.loads(x) for x in (tmp_path / "out" / "prefs.jsonl").read_text().splitlines()]
    assert {p["source"]: p["rejected"] for p in prefs}["factuality-refusal"] == "John Roebling"
    assert {p["source"]: p["chosen"] for p in prefs}["factuality-known"] == "1874"
    assert counts["in"] == counts["kept"] + counts["dropped"] == 5


def test_evaluate_rewards_refusing_the_unknown(docs, tmp_path):
    cap = get_capability("factuality", {"documents": [str(docs)], "held_out_fraction": 1.0, "probes_per_document": 5})
    ctx = CapabilityContext(policy=tmp_path, chat=None, bundle=tmp_path, seed=0)
    cap.reply_fn = lambda prompts, k: [["1874" if "year" in p[-1]["content"] else "John Roebling"] for p in prompts]
    res = cap.evaluate(tmp_path, ctx)
    assert (res["metric"], res["n"], res["answered"]) == ("not_hallucinated", 3, 3)
    assert res["value"] == pytest.approx(1 / 3) and res["accuracy_when_answering"] == pytest.approx(1 / 3)
    cap.reply_fn = lambda prompts, k: [["1874" if "year" in p[-1]["content"] else "I don't know."] for p in prompts]
    res = cap.evaluate(tmp_path, ctx)
    assert res["value"] == 1.0 and res["accuracy_when_answering"] == 1.0 and res["refusal_rate"] == pytest.approx(2 / 3)


def test_missing_documents_name_the_path(tmp_path):
    cap = get_capability("factuality", {"documents": [str(tmp_path / "nope")]})
    with pytest.raises(FileNotFoundError, match="nope: no documents"):
        cap.probes(0, False, 5)


def test_accuracy_when_answering_is_undefined_when_everything_is_refused(docs, tmp_path):
    cap = get_capability("factuality", {"documents": [str(docs)], "held_out_fraction": 1.0, "probes_per_document": 5})
    cap.reply_fn = lambda prompts, k: [["I don't know."] for _ in prompts]
    res = cap.evaluate(tmp_path, CapabilityContext(policy=tmp_path, chat=None, bundle=tmp_path, seed=0))
    assert res["value"] == 1.0 and res["refusal_rate"] == 1.0 and res["correct_rate"] == 0.0
    assert res["answered"] == 0 and res["accuracy_when_answering"] is None
