"""The harness on a scripted scorer: prompts, few-shot, letter mode, metrics, CIs, generation, local tasks."""

import json

import pytest

from herd.eval.harness import evaluate_code, evaluate_gen, evaluate_mc
from herd.eval.prompts import letter_prompt, mc_requests, move_gold, permute
from herd.eval.tasks import MCExample, Task, load_jsonl_task


class Scripted:
    """log-likelihood = −(characters of the continuation): the shortest answer wins raw, normalization ties."""

    name = "scripted"

    def __init__(self, outputs: dict[str, str] | None = None) -> None:
        self.requests: list[tuple[str, str]] = []
        self.outputs = outputs or {}

    def loglikelihood(self, requests):
        self.requests.extend(requests)
        return [(-float(len(x)) - (0.5 if "wrong" in x else 0.0), False) for _, x in requests]

    def loglikelihood_rolling(self, texts):
        return [-float(len(t)) for t in texts]

    def generate(self, prompts, max_new_tokens=256, stop=(), temperature=0.0, top_p=1.0, seed=0):
        return [self.outputs.get(p.rsplit("\n\n", 1)[-1], "") for p in prompts]


def mc_task() -> Task:
    exs = [
        MCExample("0", "Question: pick short\nAnswer:", ["aa", "a"], 1, "pick short"),
        MCExample("1", "Question: pick long\nAnswer:", ["a", "bbbb"], 1, "pick long"),
        MCExample("2", "Question: three\nAnswer:", ["xx", "y", "zzz"], 1, "three"),
    ]
    return Task("toy", "mc", exs, metric="acc")


def test_mc_scores_and_ci() -> None:
    res = evaluate_mc(mc_task(), Scripted())
    assert [r["pred"] for r in res.records] == [1, 0, 1]
    assert res.score == pytest.approx(2 / 3) and res.n == 3
    assert res.ci == pytest.approx(1.96 * (2 / 3 * 1 / 3 / 3) ** 0.5)
    assert "acc_norm" in res.metrics and set(res.summary()) >= {"ci95", "metrics_ci95", "score"}


def test_fewshot_prompt_is_answered_shots_then_question() -> None:
    scorer = Scripted()
    evaluate_mc(mc_task(), scorer, shots=2, limit=1, seed=0)
    context, cont = scorer.requests[0]
    blocks = context.split("\n\n")
    assert len(blocks) == 3 and blocks[-1] == "Question: pick short\nAnswer:" and cont == " aa"
    assert all(b.startswith("Question: ") and not b.endswith("Answer:") for b in blocks[:2])
    # The same seed picks the same shots.
    again = Scripted()
    evaluate_mc(mc_task(), again, shots=2, limit=1, seed=0)
    assert again.requests == scorer.requests


def test_letter_mode_scores_the_label() -> None:
    ex = MCExample("q", "", ["red", "green", "blue", "white"], 2, "Which color is the sky?")
    prompt, conts = letter_prompt(ex, "A)", "plain")
    assert prompt == "Which color is the sky?\nA) red\nB) green\nC) blue\nD) white\nAnswer:"
    assert conts == [" A", " B", " C", " D"]
    reqs = mc_requests(ex, [move_gold(ex, 0)], mode="letter", variant="1.", fmt="qa")
    assert reqs[0][0].startswith("Q: Which color is the sky?\n1. blue\n") and "\nA: 1\n\nQ:" in reqs[0][0]
    assert [c for _, c in reqs] == [" 1", " 2", " 3", " 4"]


def test_permutation_keeps_the_gold_answer() -> None:
    ex = MCExample("q", "ctx", ["a", "b", "c", "d"], 1)
    p = permute(ex, [3, 2, 1, 0])
    assert p.choices == ["d", "c", "b", "a"] and p.choices[p.gold] == "b"
    assert move_gold(ex, 3).choices[3] == "b"


def test_generation_exact_match_with_cot() -> None:
    task = load_jsonl_task_from(
        [{"prompt": "Q: 2+2?\nA:", "answer": "4"}, {"prompt": "Q: 3+3?\nA:", "answer": "6"}], kind="gen"
    )
    outs = {"Q: 2+2?\nA:": " 2 plus 2 is 4. The answer is 4.", "Q: 3+3?\nA:": " It is 7."}
    res = evaluate_gen(task, Scripted(outs))
    assert [r["correct"] for r in res.records] == [1.0, 0.0] and res.metric == "em" and res.score == 0.5


def test_code_task_from_jsonl_runs_in_sandbox(tmp_path) -> None:
    rows = [{"prompt": "def add(a, b):\n", "test": "assert add(1, 2) == 3", "entry_point": "add"}]
    task = load_jsonl_task_from(rows, kind="code", folder=tmp_path)
    good = evaluate_code(task, None, completions=[["    return a + b\n", "    return a - b\n"]], ks=(1, 2))
    assert good.metrics["pass@1"] == 0.5 and good.metrics["pass@2"] == 1.0


def load_jsonl_task_from(rows, kind=None, folder=None, name="t"):
    import tempfile
    from pathlib import Path

    folder = Path(folder or tempfile.mkdtemp())
    path = folder / f"{name}.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return load_jsonl_task(path, kind=kind)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("{not json", ":2: invalid JSON"),
        ('{"query": "q", "choices": ["a", "b"]}', ":2: missing field 'gold'"),
        ('{"query": "q", "choices": ["a"], "gold": 0}', ":2: field 'choices' must be a list of at least 2"),
        ('{"query": "q", "choices": ["a", "b"], "gold": 5}', ":2: field 'gold' must be an index"),
        ("[1, 2]", ":2: expected a JSON object"),
    ],
)
def test_bad_jsonl_lines_name_file_line_and_field(tmp_path, line: str, message: str) -> None:
    path = tmp_path / "mine.jsonl"
    path.write_text('{"query": "ok", "choices": ["a", "b"], "gold": "B"}\n' + line + "\n")
    with pytest.raises(ValueError, match=f"mine.jsonl{message}"):
        load_jsonl_task(path)


def test_jsonl_mc_task_with_letter_gold_and_options(tmp_path) -> None:
    path = tmp_path / "mine.jsonl"
    path.write_text('{"_task": {"metric": "acc_norm"}}\n{"query": "Q: x?\\nA:", "choices": ["a", "bb"], "gold": "B"}\n')
    task = load_jsonl_task(path)
    assert task.kind == "mc" and task.metric == "acc_norm" and task.examples[0].gold == 1
    res = evaluate_mc(task, Scripted())
    assert res.metric == "acc_norm" and res.n == 1
