"""The tool-execution loop [P §4.3.5]: generate → parse the tool call → run it → append the result as an
`ipython` message → generate again, until a reply without a call (the final answer) or a step limit.

The loop takes a `generate(messages) -> message` callable (or a batched one), so chat, serving and
post-training data generation share it; `model_generator` builds one from a herd model and chat format.

Tool names: `python` (alias `code_interpreter`, Llama 3.1's built-in), `search` (alias `brave_search`),
`calculator` (alias `wolfram_alpha`); JSON function definitions may be added for the system prompt.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from herd.tokenizer.chat import Llama3ChatFormat, ToolCall, parse_tool_call
from herd.tools.calculator import CalculatorError, calculate
from herd.tools.functions import check_arguments
from herd.tools.python import PythonTool
from herd.tools.search import SearchIndex

Message = dict[str, Any]
Generate = Callable[[list[Message]], Message]
GenerateBatch = Callable[[list[list[Message]]], list[Message]]

ALIASES = {"code_interpreter": "python", "ipython": "python", "brave_search": "search", "wolfram_alpha": "calculator"}
LLAMA_BUILTIN = {"python": "code_interpreter", "search": "brave_search", "calculator": "wolfram_alpha"}

DEFINITIONS: dict[str, dict[str, Any]] = {
    "python": {
        "name": "python",
        "description": "Run Python 3 code and return what it prints (the value of a last expression is printed).",
        "parameters": {"type": "object", "properties": {"code": {"type": "string"}}, "required": ["code"]},
    },
    "search": {
        "name": "search",
        "description": "Search the State of the Union addresses 1790-2021; returns the best passages with titles.",
        "parameters": {"type": "object", "properties": {"query": {"type": "string"}}, "required": ["query"]},
    },
    "calculator": {
        "name": "calculator",
        "description": "Evaluate arithmetic or solve an equation exactly, e.g. '37*48+12' or '3x + 7 = 22'.",
        "parameters": {"type": "object", "properties": {"expression": {"type": "string"}}, "required": ["expression"]},
    },
}


class CallParseError(ValueError):
    """The reply announces a tool call that cannot be read (e.g. <tool_call> without valid JSON)."""


@dataclass(frozen=True)
class ToolResult:
    ok: bool
    output: str  # what the ipython message carries
    error: str = ""  # "" | unknown_tool | bad_arguments | execution


@dataclass
class Toolbox:
    """The tools a loop may run. `search` needs an index; `python` a PythonTool (isolation checked on use)."""

    search: SearchIndex | None = None
    python: PythonTool | None = None
    calculator: bool = True
    functions: list[dict[str, Any]] = field(default_factory=list)  # extra JSON definitions (not executed)
    search_k: int = 2

    @classmethod
    def build(cls, names: Sequence[str], corpus: str | Path | None = None, unprotected: Sequence[str] = ()) -> Toolbox:
        """A toolbox from tool names (python, search, calculator); search reads `corpus`."""
        unknown = set(names) - set(DEFINITIONS)
        if unknown:
            raise ValueError(f"unknown tool(s) {sorted(unknown)}; known: {', '.join(DEFINITIONS)}")
        if "search" in names and corpus is None:
            raise ValueError("the search tool needs a corpus (a folder of .txt/.jsonl or the sotu .tgz)")
        return cls(
            search=SearchIndex.from_path(corpus) if "search" in names and corpus is not None else None,
            python=PythonTool(accepted=tuple(unprotected)) if "python" in names else None,
            calculator="calculator" in names,
        )

    @property
    def names(self) -> list[str]:
        have = {"python": self.python is not None, "search": self.search is not None, "calculator": self.calculator}
        return [n for n in DEFINITIONS if have[n]]

    def definitions(self) -> list[dict[str, Any]]:
        return [DEFINITIONS[n] for n in self.names] + list(self.functions)

    def execute(self, call: ToolCall) -> ToolResult:
        name = ALIASES.get(call["name"], call["name"])
        if name not in self.names:
            known = ", ".join(self.names)
            return ToolResult(False, f"error: no tool named {call['name']!r} (tools: {known})", "unknown_tool")
        args = _arguments(name, call["arguments"])
        if reason := check_arguments(DEFINITIONS[name], args):
            return ToolResult(False, f"error: {reason.replace('_', ' ')}", "bad_arguments")
        return _RUNNERS[name](self, args)


def _arguments(name: str, args: Any) -> Any:
    """Built-ins accept their one argument as a bare string or under Llama 3.1's name "query"."""
    key = DEFINITIONS[name]["parameters"]["required"][0]
    if isinstance(args, str):
        return {key: args}
    if isinstance(args, Mapping) and key not in args and set(args) == {"query"}:
        return {key: args["query"]}
    return args


def _run_python(box: Toolbox, args: Mapping[str, Any]) -> ToolResult:
    assert box.python is not None
    ok, text, _ = box.python.run(args["code"])
    return ToolResult(ok, text, "" if ok else "execution")


def _run_search(box: Toolbox, args: Mapping[str, Any]) -> ToolResult:
    assert box.search is not None
    hits = box.search.search(args["query"], box.search_k)
    if not hits:
        return ToolResult(True, "no results")
    return ToolResult(True, "\n".join(f"[{i}] {h.render()}" for i, h in enumerate(hits, 1)))


def _run_calculator(box: Toolbox, args: Mapping[str, Any]) -> ToolResult:
    try:
        return ToolResult(True, calculate(args["expression"]).text)
    except CalculatorError as e:
        return ToolResult(False, f"error: {e}", "execution")


_RUNNERS: dict[str, Callable[[Toolbox, Mapping[str, Any]], ToolResult]] = {
    "python": _run_python,
    "search": _run_search,
    "calculator": _run_calculator,
}


# ---------------------------------------------------------------- prompts and parsing

_TOOL_CALL = re.compile(r"<tool_call>\s*(?P<body>.*?)\s*(?:</tool_call>|$)", re.DOTALL)


def system_prompt(definitions: Sequence[Mapping[str, Any]], builtin: Sequence[str] = ()) -> str:
    """Tool definitions as JSON in the system prompt; `builtin` adds Llama 3.1's "Environment: ipython" and
    "Tools:" lines (for models trained on them) [LM llama3_1/prompt_format.md]."""
    head = []
    if builtin:
        head = ["Environment: ipython"]
        named = [LLAMA_BUILTIN[n] for n in builtin if n in ("search", "calculator")]
        head += [f"Tools: {', '.join(named)}"] if named else []
        head += [""]
    lines = [json.dumps(d) for d in definitions]
    return "\n".join([
        *head,
        "You can call these functions. To call one, reply with only",
        '<tool_call>{"name": "<function name>", "arguments": {<argument>: <value>}}</tool_call>',
        "Its result comes back in an ipython message. When you know the answer, reply in plain text.",
        "",
        *lines,
    ])  # fmt: skip


def extract_call(message: Mapping[str, Any]) -> ToolCall | None:
    """The tool call in an assistant message (parsed by the chat format, or in its text as <tool_call>,
    <|python_tag|>, `name.call(query=...)`, a JSON call or a python-list call); None for a plain answer."""
    if message.get("tool_calls"):
        call = message["tool_calls"][0]
        fn = call.get("function", call)
        return ToolCall(name=fn["name"], arguments=fn.get("arguments", fn.get("parameters", {})))
    content = str(message.get("content") or "")
    if m := _TOOL_CALL.search(content):
        return _json_call(m.group("body"))
    if "<|python_tag|>" in content:
        return parse_tool_call(content.split("<|python_tag|>", 1)[1].strip(), tagged=True)
    return parse_tool_call(content.strip(), tagged=False)


def _json_call(body: str) -> ToolCall:
    try:
        obj = json.loads(body)
    except json.JSONDecodeError as e:
        raise CallParseError(f"<tool_call> body is not JSON: {e.msg}") from None
    if isinstance(obj, list) and obj:  # SmolLM2/Hermes write a list of calls; one call per turn here
        obj = obj[0]
    if not isinstance(obj, dict) or not isinstance(obj.get("name"), str):
        raise CallParseError("<tool_call> body is not an object with a 'name'")
    return ToolCall(name=obj["name"], arguments=obj.get("arguments", obj.get("parameters", {})))


def call_message(call: ToolCall, chat: Any) -> Message:
    """An assistant message making `call`, written the way `chat` trains and parses it: Llama 3.1 as
    <|python_tag|> + the built-in call ending in <|eom_id|>; a template format as <tool_call>{json}."""
    if isinstance(chat, Llama3ChatFormat):
        name = LLAMA_BUILTIN.get(call["name"], call["name"])
        args = call["arguments"]
        if name == "code_interpreter" and isinstance(args, Mapping):
            args = {"code": args["code"]}
        elif name in ("brave_search", "wolfram_alpha") and isinstance(args, Mapping):
            args = {"query": next(iter(args.values()))}
        return {"role": "assistant", "content": "", "tool_calls": [ToolCall(name=name, arguments=args)],
                "stop_reason": "end_of_message"}  # fmt: skip
    text = json.dumps({"name": call["name"], "arguments": call["arguments"]})
    return {"role": "assistant", "content": f"<tool_call>{text}</tool_call>", "tool_calls": [call]}


# ---------------------------------------------------------------- the loop


@dataclass
class Trajectory:
    messages: list[Message]
    status: str = "running"  # answer | parse_error | loop | max_steps | out_of_tokens
    calls: list[ToolCall] = field(default_factory=list)
    results: list[ToolResult] = field(default_factory=list)
    detail: str = ""

    @property
    def answer(self) -> str:
        return str(self.messages[-1].get("content", "")) if self.status == "answer" else ""


def run_tool_loops(
    generate_batch: GenerateBatch,
    prompts: Sequence[Sequence[Message]],
    toolbox: Toolbox,
    max_steps: int = 4,
    on_event: Callable[[int, str, Any], None] | None = None,
) -> list[Trajectory]:
    """One trajectory per prompt; all still running are generated together each step. `on_event(i, kind,
    payload)` sees "call", "result" and "answer" as they happen (chat prints them)."""
    trajs = [Trajectory([dict(m) for m in p]) for p in prompts]
    for step in range(max_steps + 1):
        active = [i for i, t in enumerate(trajs) if t.status == "running"]
        if not active:
            break
        replies = generate_batch([trajs[i].messages for i in active])
        for i, reply in zip(active, replies, strict=True):
            emit = (lambda kind, x, i=i: on_event(i, kind, x)) if on_event else (lambda kind, x: None)
            _advance(trajs[i], reply, toolbox, step == max_steps, emit)
    return trajs


def _advance(t: Trajectory, reply: Message, toolbox: Toolbox, last: bool, emit: Callable[[str, Any], Any]) -> None:
    try:
        call = extract_call(reply)
    except CallParseError as e:
        t.messages.append(dict(reply))
        t.status, t.detail = "parse_error", str(e)
        return
    if call is None:
        t.messages.append({k: v for k, v in reply.items() if k != "tool_calls"})
        t.status = "out_of_tokens" if reply.get("stop_reason") == "out_of_tokens" else "answer"
        emit("answer", t.messages[-1]["content"])
        return
    t.messages.append({**reply, "tool_calls": [call], "stop_reason": "end_of_message"})
    emit("call", call)
    if _key(call) in {_key(c) for c in t.calls}:
        t.calls.append(call)
        t.status, t.detail = "loop", f"repeated call to {call['name']}"
        return
    t.calls.append(call)
    if last:
        t.status, t.detail = "max_steps", "still calling tools at the step limit"
        return
    result = toolbox.execute(call)
    t.results.append(result)
    t.messages.append({"role": "ipython", "content": result.output})
    emit("result", result)


def _key(call: ToolCall) -> str:
    return json.dumps([ALIASES.get(call["name"], call["name"]), call["arguments"]], sort_keys=True)


def run_tool_loop(generate: Generate, messages: Sequence[Message], toolbox: Toolbox, max_steps: int = 4,
                  on_event: Callable[[str, Any], None] | None = None) -> Trajectory:  # fmt: skip
    """The loop for one conversation over a one-at-a-time `generate(messages) -> message`."""
    emit = (lambda i, kind, x: on_event(kind, x)) if on_event else None
    return run_tool_loops(lambda batch: [generate(m) for m in batch], [messages], toolbox, max_steps, emit)[0]


def model_generator(
    model: Any,
    chat: Any,
    max_new_tokens: int = 256,
    temperature: float = 0.0,
    top_p: float = 1.0,
    seed: int = 0,
    batch: int = 8,
) -> GenerateBatch:
    """A batched `generate` over a herd model: replies parsed by the chat format; a reply cut by
    `max_new_tokens` gets stop_reason "out_of_tokens". Each call draws a fresh seed."""
    from herd.model import generate

    stop_ids = sorted(chat.tokenizer.stop_ids)
    calls = [0]

    def run(dialogs: list[list[Message]]) -> list[Message]:
        out: list[Message] = []
        for j in range(0, len(dialogs), batch):
            prompts = [chat.encode_prompt(d) for d in dialogs[j : j + batch]]
            calls[0] += 1
            seqs = generate(model, prompts, max_new_tokens, temperature, top_p, stop_ids, seed + calls[0])
            limit = min(max_new_tokens, model.cfg.max_seq_len - max(map(len, prompts)))
            for s in seqs:
                cut = len(s) >= limit
                out.append(dict(chat.decode_message(s if cut else [*s, stop_ids[0]])))
        return out

    return run
