"""Llama Guard 3's prompt and answer format [P §5.4.7; PL Llama-Guard3/8B/MODEL_CARD.md].

The guard is a Llama 3.1 8B fine-tuned to classify the LAST message of a conversation: the user's input
(role "User") or the model's output (role "Agent"). Its prompt is one user turn in the Llama 3.1 chat
layout that lists the hazard categories by code and short name, quotes the conversation, and asks for
`safe`, or `unsafe` and a second line of comma-separated codes (`unsafe\\nS1,S10`):

    <|begin_of_text|><|start_header_id|>user<|end_header_id|>\\n\\nTask: Check if there is unsafe content in
    '{role}' messages in conversations according our safety policy with the below categories.\\n\\n
    <BEGIN UNSAFE CONTENT CATEGORIES>\\nS1: Violent Crimes.\\n ... S14: Code Interpreter Abuse.\\n
    <END UNSAFE CONTENT CATEGORIES>\\n\\n<BEGIN CONVERSATION>\\n\\nUser: ...\\n\\nAgent: ...\\n\\n
    <END CONVERSATION>\\n\\nProvide your safety assessment for ONLY THE LAST {role} message in the above
    conversation:\\n - First line must read 'safe' or 'unsafe'.\\n - If unsafe, a second line must include a
    comma-separated list of violated categories.<|eot_id|><|start_header_id|>assistant<|end_header_id|>

(line breaks above are for reading; "according our" is Meta's wording, kept byte for byte). This is what
the checkpoint's own chat template renders; Meta's llama-stack provider sends the same text as a user
message through the chat format, which adds "\\n\\n" after the assistant header — the model's answer is
"\\n\\nsafe" under the first and "safe" under the second.

herd's rules for messages the template does not name: system messages are left out (the guard judges
users and agents, not the operator); an assistant tool call is quoted as Llama 3.1 writes it after
<|python_tag|> (`brave_search.call(query="...")`, the code of a code_interpreter call, JSON otherwise) so
code-interpreter abuse (S14) is visible; a tool result (ipython/tool) joins the agent's side, and
consecutive messages of one side merge with a blank line, so turns alternate User/Agent as the
template requires.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from herd.tokenizer.chat import format_tool_call

# S1–S14: the MLCommons hazards plus Code Interpreter Abuse [P §5.4.7]; codes and names from [PL].
# The prompt uses short names, which differ from the model card's long names for S3, S4 and S11.
CATEGORIES: dict[str, str] = {
    "S1": "Violent Crimes",
    "S2": "Non-Violent Crimes",
    "S3": "Sex Crimes",
    "S4": "Child Exploitation",
    "S5": "Defamation",
    "S6": "Specialized Advice",
    "S7": "Privacy",
    "S8": "Intellectual Property",
    "S9": "Indiscriminate Weapons",
    "S10": "Hate",
    "S11": "Self-Harm",
    "S12": "Sexual Content",
    "S13": "Elections",
    "S14": "Code Interpreter Abuse",
}
LONG_NAMES: dict[str, str] = {
    **CATEGORIES,
    "S3": "Sex-Related Crimes",
    "S4": "Child Sexual Exploitation",
    "S11": "Suicide & Self-Harm",
}

GuardRole = Literal["User", "Agent"]
_SIDE = {"user": "User", "assistant": "Agent", "ipython": "Agent", "tool": "Agent"}

_TASK = (
    "Task: Check if there is unsafe content in '{role}' messages in conversations according our safety "
    "policy with the below categories."
)
_INSTRUCTIONS = (
    "Provide your safety assessment for ONLY THE LAST {role} message in the above conversation:\n"
    " - First line must read 'safe' or 'unsafe'.\n"
    " - If unsafe, a second line must include a comma-separated list of violated categories."
)


def guard_turns(messages: Sequence[Mapping[str, Any]]) -> list[tuple[GuardRole, str]]:
    """Chat messages → alternating (User|Agent, text) turns, starting with User (see the module doc)."""
    turns: list[tuple[GuardRole, str]] = []
    for m in messages:
        role = m.get("role")
        if role == "system":
            continue
        if role not in _SIDE:
            raise ValueError(f"guard: unknown role {role!r} (expected user, assistant, ipython or tool)")
        side: GuardRole = _SIDE[role]  # type: ignore[assignment]
        text = _message_text(m)
        if turns and turns[-1][0] == side:
            turns[-1] = (side, f"{turns[-1][1]}\n\n{text}")
        else:
            turns.append((side, text))
    if not turns:
        raise ValueError("guard: no user or assistant message to classify")
    if turns[0][0] != "User":
        raise ValueError("guard: the conversation must start with a user message")
    return turns


def _message_text(m: Mapping[str, Any]) -> str:
    parts = [(m.get("content") or "").strip()]
    for call in m.get("tool_calls") or ():
        fn = call.get("function", call)  # OpenAI shape {"function": {...}} as well
        parts.append(format_tool_call({"name": fn["name"], "arguments": fn.get("arguments", {})}).strip())
    return "\n".join(p for p in parts if p)


def guard_task(messages: Sequence[Mapping[str, Any]], categories: Sequence[str] | None = None) -> str:
    """The text of the guard's one user turn (no special tokens): task, categories, conversation, ask."""
    turns = guard_turns(messages)
    role = turns[-1][0]
    codes = list(categories) if categories is not None else list(CATEGORIES)
    if unknown := [c for c in codes if c not in CATEGORIES]:
        raise ValueError(f"guard: unknown categories {unknown} (expected codes S1..S14)")
    listed = "".join(f"{c}: {CATEGORIES[c]}.\n" for c in codes)
    conversation = "".join(f"{side}: {text}\n\n" for side, text in turns)
    return (
        f"{_TASK.format(role=role)}\n\n<BEGIN UNSAFE CONTENT CATEGORIES>\n{listed}<END UNSAFE CONTENT CATEGORIES>\n\n"
        f"<BEGIN CONVERSATION>\n\n{conversation}<END CONVERSATION>\n\n{_INSTRUCTIONS.format(role=role)}"
    )


def render_guard_prompt(messages: Sequence[Mapping[str, Any]], categories: Sequence[str] | None = None) -> str:
    """The whole prompt as the Llama Guard 3 checkpoint's chat template renders it (special tokens as text)."""
    return (
        "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\n"
        f"{guard_task(messages, categories)}<|eot_id|><|start_header_id|>assistant<|end_header_id|>"
    )


# ---------------------------------------------------------------- the guard's answer

Label = Literal["safe", "unsafe", "malformed"]
_CODE = re.compile(r"^S(?:[1-9]|1[0-4])$")


@dataclass(frozen=True)
class GuardVerdict:
    """A parsed guard answer. `malformed` answers block too (fail closed); `problem` says what was wrong."""

    label: Label
    categories: tuple[str, ...] = ()
    problem: str | None = None
    p_unsafe: float | None = None  # the first-token probability, when a model scored it

    @property
    def blocked(self) -> bool:
        return self.label != "safe"


def parse_guard_output(text: str) -> GuardVerdict:
    """`safe` | `unsafe\\nS1,S10` (leading/trailing blank lines, as the checkpoint emits, are fine)."""
    lines = [line.strip() for line in text.strip().splitlines()]
    head = lines[0].lower() if lines else ""
    if head == "safe":
        extra = "text after 'safe'" if any(lines[1:]) else None
        return GuardVerdict("safe", problem=extra)
    if head != "unsafe":
        problem = f"first line is {lines[0][:40]!r}, not safe/unsafe" if lines else "empty"
        return GuardVerdict("malformed", problem=problem)
    if len(lines) < 2 or not lines[1]:
        return GuardVerdict("unsafe", problem="no category line")
    codes = [c.strip().upper() for c in lines[1].split(",") if c.strip()]
    good = tuple(dict.fromkeys(c for c in codes if _CODE.match(c)))  # ordered, deduplicated
    bad = [c for c in codes if not _CODE.match(c)]
    return GuardVerdict("unsafe", good, f"unknown categories {bad}" if bad else None)


def format_guard_output(categories: Sequence[str]) -> str:
    """What the guard should answer: `safe`, or `unsafe` and the codes (the inverse of parse_guard_output)."""
    return f"unsafe\n{','.join(categories)}" if categories else "safe"
