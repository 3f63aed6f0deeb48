"""The bundled post-training data, built offline from installed packages (data-sources.md).

- chatterbot-corpus (PyPI, English YAML dialogs): SFT dialogs, RS prompts, and preference pairs whose
  rejected reply belongs to another conversation (a real reply, but to a different question).
- verifiable tasks generated here: arithmetic (chosen/rejected by computing the answer) and small Python
  functions whose chosen/rejected labels come from running their unit tests in herd.eval.sandbox.
- bigbench HHH alignment and natural_instructions, when a bigbench sdist is passed (`bigbench_sdist`):
  the 358 MB sdist is read with tarfile, never installed.
A small BPE tokenizer with the Llama 3 special tokens is trained on the texts, so toy models are tiny.
"""

from __future__ import annotations

import json
import random
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from herd.core.logging import get_logger
from herd.core.manifest import Manifest
from herd.core.stage import run_fn
from herd.posttrain.data import Preference, preference_row, write_jsonl

log = get_logger(__name__)


@dataclass
class BundleConfig:
    out: str = "runs/posttrain/bundle"
    seed: int = 0
    n_arithmetic: int = 600
    max_operand: int = 20
    n_chatterbot_prefs: int = 150
    max_chatterbot_dialogs: int = 0  # 0 = all (~700 English conversations)
    vocab_size: int = 1024  # 768 BPE ranks + 256 Llama 3 specials: a toy model's embedding stays small
    bigbench_sdist: str = ""  # path to bigbench-1.0.0.tar.gz (pip download --no-deps bigbench==1.0.0)
    max_bigbench_per_task: int = 200


def build_bundle(cfg: BundleConfig) -> Manifest:
    inputs = [cfg.bigbench_sdist] if cfg.bigbench_sdist else []
    return run_fn("posttrain-bundle", inputs, cfg, cfg.out, lambda tmp: _build(cfg, tmp))


def _build(cfg: BundleConfig, out: Path) -> dict[str, Any]:
    rng = random.Random(cfg.seed)
    dialogs, prefs, prompts = [], [], []
    for part in (arithmetic(cfg, rng), code_tasks(), chatterbot(cfg, rng), bigbench(cfg)):
        dialogs += part[0]
        prefs += part[1]
        prompts += part[2]
    rng.shuffle(dialogs)
    rng.shuffle(prefs)
    rows = {"sft": dialogs, "prefs": [preference_row(p) for p in prefs], "prompts": prompts}
    repeats = {}
    for name, items in rows.items():
        rows[name], dropped = _first_of_each(items)
        write_jsonl(out / f"{name}.jsonl", rows[name])
        write_jsonl(out / "dropped" / f"{name}-repeats.jsonl", dropped)
        repeats[name] = len(dropped)
    _train_tokenizer(cfg, dialogs, prefs, out / "tokenizer.model")
    by_source: dict[str, int] = {}
    for p in rows["prefs"]:
        by_source[p["source"]] = by_source.get(p["source"], 0) + 1
    return {"dialogs": len(rows["sft"]), "preferences": len(rows["prefs"]), "prompts": len(rows["prompts"]),
            "repeats_dropped": repeats, "by_source": by_source}  # fmt: skip


def _first_of_each(rows: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(kept, dropped): rows repeated verbatim keep their first copy. chatterbot-corpus repeats some
    conversations (tech_support.yml: one 121 times), and a repeat would land on both sides of the
    held-out split."""
    seen: set[str] = set()
    kept, dropped = [], []
    for row in rows:
        key = json.dumps(row, sort_keys=True)
        (dropped if key in seen else kept).append(row)
        seen.add(key)
    return kept, dropped


def _dialog(user: str, reply: str, source: str) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": user}, {"role": "assistant", "content": reply}], "source": source}


# ---------------------------------------------------------------- arithmetic


def arithmetic(cfg: BundleConfig, rng: random.Random) -> tuple[list, list, list]:
    """'What is a + b?': the answer is computed, so chosen (right) and rejected (wrong) are labels, not opinions."""
    dialogs, prefs, prompts = [], [], []
    space = 3 * (cfg.max_operand + 1) ** 2
    if cfg.n_arithmetic > space:
        raise ValueError(f"n_arithmetic = {cfg.n_arithmetic}: only {space} distinct problems with max_operand")
    seen: set[tuple[int, str, int]] = set()
    while len(seen) < cfg.n_arithmetic:  # distinct problems: a repeat would leak into the held-out split
        a, b = rng.randint(0, cfg.max_operand), rng.randint(0, cfg.max_operand)
        op = rng.choice("+-*")
        if (a, op, b) in seen:
            continue
        seen.add((a, op, b))
        right = {"+": a + b, "-": a - b, "*": a * b}[op]
        wrong = right + rng.choice([-10, -2, -1, 1, 2, 10])
        question = f"What is {a} {op} {b}?"
        prompt = [{"role": "user", "content": question}]
        # Ranked edited > chosen > rejected: the edited answer shows the working, the chosen one is terse.
        worked = f"{a} {op} {b} = {right}."
        if rng.random() < 0.3:
            responses = [worked, f"{right}", f"{wrong}"]
        else:
            responses = [worked, f"{a} {op} {b} = {wrong}."]
        prefs.append(Preference(prompt, responses, "significantly_better", "arithmetic", {"answer": right}))
        dialogs.append(_dialog(question, f"{a} {op} {b} = {right}.", "arithmetic"))
        prompts.append({"prompt": prompt, "source": "arithmetic", "answer": right})
    return dialogs, prefs, prompts


# ---------------------------------------------------------------- code with tests

# (task, function source that is right, variants that may be wrong, test lines); the sandbox decides.
_CODE: list[tuple[str, str, list[str], list[str]]] = [
    (
        "Write a Python function add(a, b) that returns the sum of a and b.",
        "def add(a, b):\n    return a + b",
        ["def add(a, b):\n    return a - b", "def add(a, b):\n    return a * b"],
        ["add(2, 3) == 5", "add(-1, 1) == 0"],
    ),
    (
        "Write a Python function is_even(n) that returns True when n is even.",
        "def is_even(n):\n    return n % 2 == 0",
        ["def is_even(n):\n    return n % 2 == 1"],
        ["is_even(4)", "not is_even(3)"],
    ),
    (
        "Write a Python function maximum(xs) that returns the largest item of a list.",
        "def maximum(xs):\n    return max(xs)",
        ["def maximum(xs):\n    return xs[0]", "def maximum(xs):\n    return min(xs)"],
        ["maximum([1, 5, 2]) == 5", "maximum([7]) == 7"],
    ),
    (
        "Write a Python function reverse(s) that returns the string s reversed.",
        "def reverse(s):\n    return s[::-1]",
        ["def reverse(s):\n    return s", "def reverse(s):\n    return s[1:]"],
        ["reverse('abc') == 'cba'", "reverse('') == ''"],
    ),
    (
        "Write a Python function square(x) that returns x squared.",
        "def square(x):\n    return x * x",
        ["def square(x):\n    return x * 2", "def square(x):\n    return x + x"],
        ["square(3) == 9", "square(-2) == 4"],
    ),
    (
        "Write a Python function count_vowels(s) that counts the vowels in s.",
        "def count_vowels(s):\n    return sum(c in 'aeiou' for c in s.lower())",
        ["def count_vowels(s):\n    return len(s)", "def count_vowels(s):\n    return sum(c in 'aeiou' for c in s)"],
        ["count_vowels('hello') == 2", "count_vowels('AEIOU') == 5"],
    ),
    (
        "Write a Python function factorial(n) that returns n factorial.",
        "def factorial(n):\n    out = 1\n    for i in range(2, n + 1):\n        out *= i\n    return out",
        ["def factorial(n):\n    out = 1\n    for i in range(2, n):\n        out *= i\n    return out"],
        ["factorial(5) == 120", "factorial(0) == 1"],
    ),
    (
        "Write a Python function mean(xs) that returns the average of a list of numbers.",
        "def mean(xs):\n    return sum(xs) / len(xs)",
        ["def mean(xs):\n    return sum(xs) // len(xs)"],
        ["mean([1, 2]) == 1.5", "mean([4]) == 4"],
    ),
]


def code_tasks() -> tuple[list, list, list]:
    """Every candidate is run against its tests in the sandbox; passing ones are chosen, failing ones rejected."""
    from herd.eval.sandbox import run_python

    dialogs, prefs, prompts = [], [], []
    for task, right, variants, tests in _CODE:
        program = "\n".join(f"assert {t}" for t in tests)
        results = {src: run_python(f"{src}\n{program}\n").passed for src in [right, *variants]}
        passed = [s for s, ok in results.items() if ok]
        failed = [s for s, ok in results.items() if not ok]
        prompt = [{"role": "user", "content": task}]
        for good in passed:
            dialogs.append(_dialog(task, f"```python\n{good}\n```", "code"))
            for bad in failed:
                prefs.append(
                    Preference(
                        prompt,
                        [f"```python\n{good}\n```", f"```python\n{bad}\n```"],
                        "significantly_better",
                        "code",
                        {"tests": tests},
                    )
                )
        prompts.append({"prompt": prompt, "source": "code", "tests": tests})
    return dialogs, prefs, prompts


# ---------------------------------------------------------------- chatterbot


def chatterbot(cfg: BundleConfig, rng: random.Random) -> tuple[list, list, list]:
    """English chatterbot-corpus conversations: consecutive lines alternate user/assistant."""
    folder = _chatterbot_folder()
    if folder is None:
        log.warning("chatterbot-corpus is not installed (pip install --no-deps chatterbot-corpus): skipped")
        return [], [], []
    import yaml

    convs: list[list[str]] = []
    for f in sorted(folder.glob("*.yml")):
        data = yaml.safe_load(f.read_text(encoding="utf-8")) or {}
        for conv in data.get("conversations") or []:
            turns = [str(t).strip() for t in conv if isinstance(t, str | int | float) and str(t).strip()]
            if len(turns) >= 2:
                convs.append(turns)
    if cfg.max_chatterbot_dialogs:
        convs = rng.sample(convs, min(cfg.max_chatterbot_dialogs, len(convs)))
    dialogs, pairs = [], []
    for turns in convs:
        n = len(turns) - len(turns) % 2
        messages = [{"role": ("user", "assistant")[i % 2], "content": t} for i, t in enumerate(turns[:n])]
        dialogs.append({"messages": messages, "source": "chatterbot"})
        pairs.append((turns[0], turns[1]))
    prefs = []
    for i in rng.sample(range(len(pairs)), min(cfg.n_chatterbot_prefs, len(pairs))):
        question, reply = pairs[i]
        other = pairs[rng.randrange(len(pairs))][1]
        if other != reply:
            prefs.append(Preference([{"role": "user", "content": question}], [reply, other], "better", "chatterbot"))
    prompts = [{"prompt": [{"role": "user", "content": q}], "source": "chatterbot"} for q, _ in pairs]
    return dialogs, prefs, prompts


def _chatterbot_folder() -> Path | None:
    import importlib.util

    spec = importlib.util.find_spec("chatterbot_corpus")
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(spec.submodule_search_locations[0]) / "data" / "english"
    return folder if folder.is_dir() else None


# ---------------------------------------------------------------- bigbench (optional)

_HHH = ("hhh_alignment/harmless", "hhh_alignment/helpful", "hhh_alignment/honest", "hhh_alignment/other")


def bigbench(cfg: BundleConfig) -> tuple[list, list, list]:
    """HHH pairs (target_scores 1 vs 0) and natural_instructions dialogs from the bigbench sdist."""
    if not cfg.bigbench_sdist:
        return [], [], []
    dialogs, prefs = [], []
    with tarfile.open(cfg.bigbench_sdist) as tar:
        for member in tar.getmembers():
            name = member.name
            if not name.endswith("task.json") or "/benchmark_tasks/" not in name:
                continue
            task = name.split("/benchmark_tasks/")[1].rsplit("/task.json", 1)[0]
            if task in _HHH:
                prefs += _hhh(json.load(tar.extractfile(member)), cfg.max_bigbench_per_task)
            elif task.startswith("natural_instructions/"):
                dialogs += _natural_instructions(json.load(tar.extractfile(member)), cfg.max_bigbench_per_task)
    return dialogs, prefs, []


def _hhh(data: dict, limit: int) -> list[Preference]:
    out = []
    for ex in data.get("examples", [])[:limit]:
        scores = ex.get("target_scores", {})
        good = [k for k, v in scores.items() if v == 1]
        bad = [k for k, v in scores.items() if v == 0]
        if good and bad:
            prompt = [{"role": "user", "content": ex["input"].strip()}]
            out.append(Preference(prompt, [good[0].strip(), bad[0].strip()], "better", "hhh"))
    return out


def _natural_instructions(data: dict, limit: int) -> list[dict[str, Any]]:
    prefix = data.get("task_prefix", "").strip()
    out = []
    for ex in data.get("examples", [])[:limit]:
        target = ex.get("target")
        target = target[0] if isinstance(target, list) and target else target
        if isinstance(target, str) and target.strip():
            out.append(_dialog(f"{prefix}\n{ex['input']}".strip(), target.strip(), "natural_instructions"))
    return out


# ---------------------------------------------------------------- tokenizer


def _train_tokenizer(cfg: BundleConfig, dialogs: list, prefs: list[Preference], path: Path) -> None:
    from herd.tokenizer.ranks import save_ranks
    from herd.tokenizer.train import train_bpe

    texts = [m["content"] for d in dialogs for m in d["messages"]]
    texts += [r for p in prefs for r in p.responses] + ["user", "assistant", "system", "\n\n"]
    save_ranks(train_bpe(texts, vocab_size=cfg.vocab_size), path)
