"""Multiple-choice prompt rendering: cloze (score the answer text) and letter choice (score the label).

Letter-choice prompts have three independent knobs, the axes of the robustness study [P §5.1.2]: the
label set (`LABEL_VARIANTS`), the prompt layout (`FORMATS`) and the order of the answers (a permutation).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, replace

from herd.eval.tasks import LETTERS, MCExample


@dataclass(frozen=True)
class LabelVariant:
    labels: tuple[str, ...]
    sep: str  # between label and answer text in the option list


# [P §5.1.2]: "$ & # @", "œ § з ü", "A.", "A)" and "1.".
LABEL_VARIANTS: dict[str, LabelVariant] = {
    "A.": LabelVariant(tuple(LETTERS), ". "),
    "A)": LabelVariant(tuple(LETTERS), ") "),
    "1.": LabelVariant(tuple(str(i) for i in range(1, 11)), ". "),
    "$ & # @": LabelVariant(("$", "&", "#", "@", "%", "*"), " "),
    "œ § з ü": LabelVariant(("œ", "§", "з", "ü", "ð", "ж"), " "),
}

# Five layouts of the same question; {q} the question, {options} one "label sep text" per line.
FORMATS: dict[str, str] = {
    "plain": "{q}\n{options}\nAnswer:",
    "question": "Question: {q}\nChoices:\n{options}\nAnswer:",
    "qa": "Q: {q}\n{options}\nA:",
    "instruction": "Choose the correct option.\n{q}\n{options}\nThe correct option is",
    "exam": "Problem: {q}\nOptions:\n{options}\nSolution: the answer is",
}


def letter_prompt(ex: MCExample, variant: str = "A.", fmt: str = "plain") -> tuple[str, list[str]]:
    """(prompt, continuations): the continuations are " " + label, one per choice."""
    lv = LABEL_VARIANTS[variant]
    if len(ex.choices) > len(lv.labels):
        raise ValueError(f"example {ex.id}: {len(ex.choices)} choices but label set '{variant}' has {len(lv.labels)}")
    options = "\n".join(f"{lv.labels[i]}{lv.sep}{c}" for i, c in enumerate(ex.choices))
    prompt = FORMATS[fmt].format(q=ex.question or ex.contexts()[0], options=options)
    return prompt, [f" {lv.labels[i]}" for i in range(len(ex.choices))]


def permute(ex: MCExample, order: Sequence[int]) -> MCExample:
    """The example with its choices reordered: new choice j is old choice order[j]."""
    if sorted(order) != list(range(len(ex.choices))):
        raise ValueError(f"example {ex.id}: {list(order)} is not a permutation of {len(ex.choices)} choices")
    query = [ex.contexts()[i] for i in order] if isinstance(ex.query, list) else ex.query
    return replace(ex, query=query, choices=[ex.choices[i] for i in order], gold=list(order).index(ex.gold))


def move_gold(ex: MCExample, position: int) -> MCExample:
    """Swap the gold answer into `position` (few-shot label-bias patterns such as AAAA)."""
    order = list(range(len(ex.choices)))
    order[ex.gold], order[position] = order[position], order[ex.gold]
    return permute(ex, order)


def rotation(n: int, shift: int) -> list[int]:
    return [(j + shift) % n for j in range(n)]


def pick_shots(pool: Sequence[MCExample], ex: MCExample, k: int, seed: int) -> list[MCExample]:
    """k shots for `ex`, from its own group when it has one, never `ex` itself; fixed by (seed, ex.id)."""
    if k <= 0:
        return []
    same = [p for p in pool if p.id != ex.id and (not ex.group or p.group == ex.group)]
    candidates = same if len(same) >= k else [p for p in pool if p.id != ex.id]
    rng = random.Random(f"{seed}:{ex.id}")
    return rng.sample(candidates, min(k, len(candidates)))


def mc_requests(
    ex: MCExample,
    shots: Sequence[MCExample],
    mode: str = "cloze",
    variant: str = "A.",
    fmt: str = "plain",
    description: str = "",
) -> list[tuple[str, str]]:
    """(context, continuation) per choice, with the shots (answered) in front, separated by blank lines."""
    if mode == "letter":
        shot_texts = []
        for s in shots:
            prompt, conts = letter_prompt(s, variant, fmt)
            shot_texts.append(prompt + conts[s.gold])
        prompt, conts = letter_prompt(ex, variant, fmt)
        head = description + "".join(t + "\n\n" for t in shot_texts)
        return [(head + prompt, c) for c in conts]
    if mode != "cloze":
        raise ValueError(f"unknown multiple-choice mode '{mode}' (cloze or letter)")
    head = description + "".join(s.text() + "\n\n" for s in shots)
    return [(head + ctx, ex.delimiter + choice) for ctx, choice in zip(ex.contexts(), ex.choices)]
