"""Steerability pipeline [P §4.3.7]: verifiable instructions, planted passing/failing replies, IFEval accuracies."""

from __future__ import annotations

import json

import pytest

from herd.posttrain.capabilities import CapabilityContext, get_capability
from herd.posttrain.capabilities.steerability import INSTRUCTIONS, Task, check, count_words

PROMPTS = ["How are you?", "What is a robot?", "Do you like music?", "Tell me about the weather.", "Who are you?"]


@pytest.fixture
def bundle(tmp_path):
    rows = [{"prompt": [{"role": "user", "content": p}], "source": "chatterbot"} for p in PROMPTS * 4]
    rows = [{**r, "id": i} for i, r in enumerate(rows)]  # distinct rows
    (tmp_path / "prompts.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return tmp_path


def _ctx(bundle):
    return CapabilityContext(policy=bundle, chat=None, bundle=bundle, seed=0)


LOWER = [("change_case:english_lowercase", {})]
JSON = [("detectable_format:json_format", {})]


@pytest.mark.parametrize(
    ("instructions", "good", "bad"),
    [
        (LOWER, "i am fine thanks.", "I am fine thanks."),
        (JSON, '```json\n{"mood": "fine"}\n```', "mood: fine"),
        (
            [("length_constraints:number_words", {"relation": "less than", "num_words": 4})],
            "fine, thanks!",
            "I am fine thanks",
        ),
        ([("length_constraints:number_sentences", {"relation": "at least", "num_sentences": 2})], "Fine. You?", "Fine"),
        ([("keywords:existence", {"keywords": ["robot", "music"]})], "A Robot likes MUSIC.", "A robot."),
        ([("detectable_format:number_bullet_lists", {"num_bullets": 2})], "* one\n- two", "* one\n* two\n* three"),
        ([("startend:end_checker", {"end_phrase": "Any other questions?"})], "Fine. any other questions? ", "Fine."),
        ([("punctuation:no_comma", {})], "fine thanks", "fine, thanks"),
        ([("startend:quotation", {})], ' "fine" ', '"fine'),
        ([("detectable_format:title", {})], "<<Mood>>\nfine", "<< >> fine"),
        ([("detectable_content:postscript", {})], "fine\nP.S. bye", "fine. PS bye"),
        ([("change_case:english_capital", {})], "FINE, THANKS", "Fine"),
    ],
)
def test_checkers_on_planted_replies(instructions, good, bad):
    task = Task([{"role": "user", "content": "How are you?"}], instructions)
    assert task.failed(good) == [] and task.failed(bad) == [instructions[0][0]]


def test_unknown_instruction_is_named():
    with pytest.raises(ValueError, match="unknown instruction id 'case:upper'"):
        check("case:upper", {}, "x")
    cap = get_capability("steerability", {"instructions": ["change_case:lowercase"]})
    with pytest.raises(ValueError, match="unknown id 'change_case:lowercase'"):
        cap.tasks(__import__("pathlib").Path("."), 0)


def test_passing_kept_failing_dropped_with_the_failed_checker(bundle, tmp_path):
    cap = get_capability(
        "steerability",
        {
            "instructions": ["change_case:english_lowercase", "detectable_format:json_format"],
            "max_instructions": 1,
            "k": 3,
            "n_prompts": 6,
            "repair": False,
        },
    )

    def scripted(prompts, k):
        out = []
        for p in prompts:
            if "lowercase" in p[0]["content"]:
                out.append(["i am fine.", "I am Fine.", ""])
            else:
                out.append(['{"answer": "fine"}', "answer: fine", '{"answer": 2}'])
        return out

    cap.reply_fn = scripted
    counts = cap.build(_ctx(bundle), tmp_path / "out")
    dropped = [json.loads(x) for x in (tmp_path / "out" / "dropped" / "dropped.jsonl").read_text().splitlines()]
    reasons = {(r["messages"][-1]["content"], r["reason"]) for r in dropped}
    assert reasons <= {
        ("I am Fine.", "failed:change_case:english_lowercase"),
        ("", "empty_reply"),
        ("answer: fine", "failed:detectable_format:json_format"),
        ('{"answer": 2}', "extra_sample"),
    }
    kept = [json.loads(x) for x in (tmp_path / "out" / "sft.jsonl").read_text().splitlines()]
    assert len(kept) == 6 and {r["messages"][-1]["content"] for r in kept} <= {"i am fine.", '{"answer": "fine"}'}
    assert all(r["messages"][0]["role"] == "system" for r in kept)
    prefs = [json.loads(x) for x in (tmp_path / "out" / "prefs.jsonl").read_text().splitlines()]
    assert len(prefs) == 6 and {(p["chosen"], p["rejected"]) for p in prefs} <= {
        ("i am fine.", "I am Fine."),
        ('{"answer": "fine"}', "answer: fine"),
    }
    assert counts["in"] == 18 and counts["kept"] == 6


def test_repair_edits_mechanical_failures_only(bundle):
    task = Task(
        [{"role": "user", "content": "hi"}],
        [("change_case:english_lowercase", {}), ("startend:end_checker", {"end_phrase": "Any other questions?"})],
    )
    fixed = task.repaired("Hello, There.")
    assert fixed == "hello, there. any other questions?" and task.failed(fixed) == []
    assert Task([], JSON).repaired("not json") is None
    short = Task([], [("length_constraints:number_words", {"relation": "less than", "num_words": 3})])
    assert short.repaired("one two three four") == "one two" and count_words("one two") == 2


def test_evaluate_prompt_and_instruction_level(bundle):
    cap = get_capability("steerability", {"instructions": ["punctuation:no_comma", "startend:quotation"], "n_eval": 6})
    cap.reply_fn = lambda prompts, k: [['"no commas here"'] for _ in prompts]
    res = cap.evaluate(bundle, _ctx(bundle))
    assert (res["metric"], res["value"], res["instruction_strict"], res["n"]) == ("ifeval_prompt_strict", 1.0, 1.0, 6)
    cap.reply_fn = lambda prompts, k: [["no commas here"] for _ in prompts]  # quotation fails, comma passes
    res = cap.evaluate(bundle, _ctx(bundle))
    quoted = sum("startend:quotation" in [i for i, _ in t.instructions] for t in cap.tasks(bundle, 0)[1][:6])
    assert res["value"] == pytest.approx(1 - quoted / 6)
    assert res["instruction_strict"] == pytest.approx(1 - quoted / res["instruction_n"])


# lm-eval's IFEval checkers: a reference nobody here wrote. Their sentence counter needs nltk's punkt
# (a download), so it is left out; case checkers there also require langdetect to say English.
_LM_EVAL = {
    "length_constraints:number_words": "NumberOfWords",
    "keywords:existence": "KeywordChecker",
    "change_case:english_lowercase": "LowercaseLettersEnglishChecker",
    "change_case:english_capital": "CapitalLettersEnglishChecker",
    "detectable_format:json_format": "JsonFormat",
    "detectable_format:number_bullet_lists": "BulletListChecker",
    "startend:end_checker": "EndChecker",
    "punctuation:no_comma": "CommaChecker",
    "startend:quotation": "QuotationChecker",
    "detectable_format:title": "TitleChecker",
    "detectable_content:postscript": "PostscriptChecker",
}
_REPLIES = [
    "i think robots like music and the weather today is fine.",
    "I THINK ROBOTS LIKE MUSIC AND THE WEATHER TODAY IS FINE.",
    "Robots, music and weather.\nP.S. hope this helps.",
    '"A quoted answer about a Robot."',
    '```json\n{"robot": "music"}\n```',
    "<<My Title>>\n* first point\n* second point\n- third point\nAny other questions?",
    "*not a bullet* one line, with a comma",
    "",
    "Short reply",
]


def test_checkers_agree_with_lm_eval_ifeval():
    pytest.importorskip("langdetect")
    pytest.importorskip("immutabledict")
    instructions = pytest.importorskip("lm_eval.tasks.ifeval.instructions")
    import random

    import langdetect

    from herd.data.langid import identify

    langdetect.DetectorFactory.seed = 0  # langdetect samples; a seed makes it repeatable

    def same_language_call(text: str) -> bool:  # the case checkers differ only in which language ID says English
        try:
            theirs = langdetect.detect(text) == "en"
        except langdetect.LangDetectException:
            theirs = True
        return theirs == (identify(text.lower())[0] in ("en", "und"))

    rng = random.Random(0)
    compared = 0
    for inst_id, cls in _LM_EVAL.items():
        for _ in range(3):
            kwargs = INSTRUCTIONS[inst_id][0](rng)
            if inst_id == "detectable_content:postscript":
                kwargs = {"postscript_marker": "P.S."}
            ref = getattr(instructions, cls)(inst_id)
            ref.build_description(**kwargs)
            ours = {k: v for k, v in kwargs.items() if k != "postscript_marker"}
            for reply in _REPLIES:
                if "change_case" in inst_id and not same_language_call(reply):
                    continue
                assert check(inst_id, ours, reply) == ref.check_following(reply), (inst_id, kwargs, reply)
                compared += 1
    assert compared > 250  # of 11 checkers x 3 settings x 9 replies = 297
