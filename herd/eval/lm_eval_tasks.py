"""Write herd tasks as local lm-evaluation-harness tasks (JSONL + YAML), so lm-eval runs offline on the same
examples. ARC, HellaSwag and PIQA are written as lm-eval's own built-in definitions (its templates, its
HellaSwag pre-processing) over the raw rows; other multiple-choice tasks as herd renders them."""

from __future__ import annotations

import json
from pathlib import Path

from herd.eval.tasks import MCExample, Task

# lm-eval's built-in task definitions (lm_eval/tasks/{arc,hellaswag,piqa}/*.yaml), minus the hub dataset.
_BUILTIN = {
    "arc": {
        "doc_to_text": "Question: {{question}}\nAnswer:",
        "doc_to_target": "{{choices.label.index(answerKey)}}",
        "doc_to_choice": "{{choices.text}}",
    },
    "hellaswag": {
        "process_docs": "!function utils.process_docs",
        "doc_to_text": "{{query}}",
        "doc_to_target": "{{label}}",
        "doc_to_choice": "choices",
    },
    "piqa": {
        "doc_to_text": "Question: {{goal}}\nAnswer:",
        "doc_to_target": "label",
        "doc_to_choice": "{{[sol1, sol2]}}",
    },
}
_GENERIC = {"doc_to_text": "{{query}}", "doc_to_target": "{{gold}}", "doc_to_choice": "{{choices}}"}
_HELLASWAG_UTILS = "from lm_eval.tasks.hellaswag.utils import process_docs  # noqa: F401\n"


def _family(name: str) -> str | None:
    if name.startswith("arc_"):
        return "arc"
    return name if name in ("hellaswag", "piqa") else None


def _row(ex: MCExample, family: str | None) -> dict:
    if family == "piqa":
        return {"goal": ex.doc["goal"], "sol1": ex.doc["sol1"], "sol2": ex.doc["sol2"], "label": int(ex.doc["label"])}
    if family in ("arc", "hellaswag"):
        return ex.doc
    if not isinstance(ex.query, str):
        raise ValueError(f"{ex.id}: per-choice contexts (Winogrande) have no generic lm-eval export")
    return {"query": ex.query, "choices": ex.choices, "gold": ex.gold}


def _yaml_value(value: str) -> str:
    return value if value.startswith("!function") else json.dumps(value)


def export_mc_task(task: Task, folder: str | Path, limit: int | None = None, prefix: str = "herd_") -> str:
    """Write `<folder>/<prefix><name>.{jsonl,yaml}` and return the lm-eval task name."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    family = _family(task.name)
    name = f"{prefix}{task.name}"
    examples = task.examples[:limit] if limit else task.examples
    data = folder / f"{name}.jsonl"
    data.write_text("".join(json.dumps(_row(ex, family)) + "\n" for ex in examples), encoding="utf-8")
    spec = _BUILTIN.get(family or "", _GENERIC)
    lines = [
        *_task_header(name, data, "multiple_choice"),
        *(f"{k}: {_yaml_value(v)}" for k, v in spec.items()),
        "metric_list:",
        "  - metric: acc",
        "    aggregation: mean",
        "    higher_is_better: true",
        "  - metric: acc_norm",
        "    aggregation: mean",
        "    higher_is_better: true",
    ]
    (folder / f"{name}.yaml").write_text("\n".join(lines) + "\n", encoding="utf-8")
    if family == "hellaswag":
        (folder / "utils.py").write_text(_HELLASWAG_UTILS, encoding="utf-8")
    return name


def export_gen_task(name: str, rows: list[dict], folder: str | Path, until: list[str]) -> str:
    """A generate_until task over {"prompt", "answer"} rows, scored by exact match."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    data = folder / f"{name}.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    lines = [
        *_task_header(name, data, "generate_until"),
        'doc_to_text: "{{prompt}}"',
        'doc_to_target: "{{answer}}"',
        "generation_kwargs:",
        f"  until: {json.dumps(until)}",
        "  do_sample: false",
        "metric_list:",
        "  - metric: exact_match",
        "    aggregation: mean",
        "    higher_is_better: true",
    ]
    (folder / f"{name}.yaml").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return name


def _task_header(name: str, data: Path, output_type: str) -> list[str]:
    """The YAML lines every exported task starts with: its name and its local JSONL test split."""
    return [
        f"task: {name}",
        "dataset_path: json",
        "dataset_kwargs:",
        "  data_files:",
        f"    test: {json.dumps(str(data.resolve()))}",
        f"output_type: {output_type}",
        "test_split: test",
    ]


# lm-eval's own generation task definitions that herd's tasks reproduce (lm_eval/tasks/<file>), and the fields
# its YAML reads from each row. DROP's rows are already in the shape its process_docs makes (answers as span
# tuples), so that step is switched off; its `answer` (only rendered as the logged target, never scored) is the
# first gold answer's spans.
_BUILTIN_GEN = {
    "nq_open": ("nq_open/nq_open.yaml", ("question", "answer")),
    "triviaqa": ("triviaqa/default.yaml", ("question", "answer")),
    "drop": ("drop/default.yaml", ("query_id", "passage", "question", "answers")),
}


def export_builtin_gen_task(task: Task, folder: str | Path, limit: int | None = None, prefix: str = "herd_") -> str:
    """lm-eval's own definition of a generation task (nq_open, triviaqa, drop) over herd's rows, as a local YAML
    that `include`s lm-eval's file and replaces only the dataset: lm-eval then renders the prompts, stops,
    filters and metrics itself. Returns the lm-eval task name."""
    import lm_eval

    if task.name not in _BUILTIN_GEN:
        raise ValueError(f"{task.name}: no lm-eval built-in generation task (known: {', '.join(_BUILTIN_GEN)})")
    rel, fields = _BUILTIN_GEN[task.name]
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    name = f"{prefix}{task.name}"
    data = folder / f"{name}.jsonl"
    examples = task.examples[:limit] if limit else task.examples
    rows = [{k: ex.doc[k] for k in fields} for ex in examples]
    if task.name == "drop":
        rows = [r | {"answer": list(r["answers"][0])} for r in rows]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    builtin = Path(lm_eval.__file__).parent / "tasks" / rel
    lines = [
        f"include: {json.dumps(str(builtin))}",
        f"task: {name}",
        "dataset_path: json",
        "dataset_name: null",
        "dataset_kwargs:",
        "  data_files:",
        f"    validation: {json.dumps(str(data.resolve()))}",
        "training_split: null",
        "validation_split: validation",
        *(["process_docs: null"] if task.name == "drop" else []),
    ]
    (folder / f"{name}.yaml").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return name
