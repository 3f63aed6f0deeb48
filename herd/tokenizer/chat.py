"""Chat formats: messages -> token ids with a loss mask, a generation prompt, and generated ids -> message.

`Llama3ChatFormat` is the Llama 3.1 multi-message protocol, whose header tokens name each message's
source and whose end tokens say who speaks next [P §4.1.1; LM llama3_1/prompt_format.md]:

    <|begin_of_text|><|start_header_id|>system<|end_header_id|>\\n\\n{system}<|eot_id|>
    <|start_header_id|>user<|end_header_id|>\\n\\n{user}<|eot_id|>
    <|start_header_id|>assistant<|end_header_id|>\\n\\n          <- generation starts here

Roles are system, user, assistant and ipython (tool output; "tool" is accepted for it). An assistant tool
call starts with <|python_tag|> and a message awaiting a tool result ends with <|eom_id|>.

`TemplateChatFormat` renders a tokenizer's jinja `chat_template` (from a GGUF or tokenizer_config.json)
the way transformers' `apply_chat_template` does.

A message is a dict: {"role", "content", optional "tool_calls": [{"name", "arguments"}],
optional "stop_reason": "end_of_turn" | "end_of_message"}.
"""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Mapping, Sequence
from functools import cache
from typing import Any, Protocol, TypedDict

from herd.tokenizer.protocol import TokenizerLike


class ToolCall(TypedDict):
    name: str
    arguments: dict[str, Any] | str


class Message(TypedDict, total=False):
    role: str
    content: str
    tool_calls: list[ToolCall]
    stop_reason: str


class ChatFormatLike(Protocol):
    """What training, rejection sampling and `herd chat` need from a chat format."""

    tokenizer: TokenizerLike

    def encode_dialog(self, messages: Sequence[Mapping[str, Any]]) -> tuple[list[int], list[int]]:
        """(tokens, loss_mask): mask is 1 on assistant content and its end token, 0 elsewhere."""
        ...

    def encode_prompt(self, messages: Sequence[Mapping[str, Any]]) -> list[int]:
        """The dialog followed by the assistant header: what the model continues."""
        ...

    def decode_message(self, tokens: Sequence[int]) -> Message:
        """Generated ids (up to and including a stop token) -> an assistant message."""
        ...


# Built-in tools are called as `name.call(query="...")` [LM llama3_1/prompt_format.md].
BUILTIN_TOOLS = ("brave_search", "wolfram_alpha", "photogen")
CODE_INTERPRETER = "code_interpreter"
_BUILTIN_CALL = re.compile(r'\b(?P<name>\w+)\.call\(query="(?P<query>[^"]*)"\)')
_FUNCTION_TAG = re.compile(r"<function=(?P<name>[^>}]+)>(?P<args>\{.*?\})(?:</function>)?", re.DOTALL)


class Llama3ChatFormat:
    """The Llama 3.1 dialog layout over any tokenizer with Llama 3's special tokens."""

    def __init__(self, tokenizer: TokenizerLike, strip_content: bool = False) -> None:
        # Llama 3.0 stripped message text [L3 ChatFormat]; llama-models (3.1+) keeps it as given.
        self.tokenizer = tokenizer
        self.strip_content = strip_content
        ids = tokenizer.special_ids
        try:
            self.start_header, self.end_header = ids["<|start_header_id|>"], ids["<|end_header_id|>"]
            self.eot, self.eom, self.python_tag = ids["<|eot_id|>"], ids["<|eom_id|>"], ids["<|python_tag|>"]
            self.bos = ids["<|begin_of_text|>"]
        except KeyError as e:
            raise ValueError(f"tokenizer has no {e.args[0]} token: not a Llama 3.1 vocabulary") from None

    def encode_header(self, role: str) -> list[int]:
        role = "ipython" if role == "tool" else role
        return [self.start_header, *self.tokenizer.encode(role), self.end_header, *self.tokenizer.encode("\n\n")]

    def encode_message(self, message: Mapping[str, Any]) -> tuple[list[int], list[int]]:
        """(tokens, mask) for one message; only an assistant's body and end token are trained on."""
        role = message["role"]
        if role not in ("system", "user", "assistant", "ipython", "tool"):
            raise ValueError(f"unknown role {role!r} (expected system, user, assistant, ipython or tool)")
        header = self.encode_header(role)
        body = self._encode_body(message)
        eom = role == "assistant" and message.get("stop_reason") == "end_of_message"
        body.append(self.eom if eom else self.eot)
        trained = 1 if role == "assistant" else 0
        return header + body, [0] * len(header) + [trained] * len(body)

    def _encode_body(self, message: Mapping[str, Any]) -> list[int]:
        content = message.get("content") or ""
        content = content.strip() if self.strip_content else content
        calls = [_normalize_call(c) for c in message.get("tool_calls") or ()]
        tokens = [self.python_tag] if calls else []
        tokens += self.tokenizer.encode(content)
        for call in calls:
            tokens += self.tokenizer.encode(format_tool_call(call))
        return tokens

    def encode_dialog(self, messages: Sequence[Mapping[str, Any]]) -> tuple[list[int], list[int]]:
        tokens, mask = [self.bos], [0]
        for message in messages:
            t, m = self.encode_message(message)
            tokens += t
            mask += m
        return tokens, mask

    def encode_prompt(self, messages: Sequence[Mapping[str, Any]]) -> list[int]:
        return self.encode_dialog(messages)[0] + self.encode_header("assistant")

    def decode_message(self, tokens: Sequence[int]) -> Message:
        tokens = list(tokens)
        header = self.encode_header("assistant")
        if tokens[: len(header)] == header:
            tokens = tokens[len(header) :]
        stop_reason = "out_of_tokens"
        for i, t in enumerate(tokens):
            if t in self.tokenizer.stop_ids:
                stop_reason = "end_of_message" if t == self.eom else "end_of_turn"
                tokens = tokens[:i]
                break
        tagged = bool(tokens) and tokens[0] == self.python_tag
        content = self.tokenizer.decode(tokens[1:] if tagged else tokens)
        call = parse_tool_call(content, tagged)
        if call is not None:
            return Message(role="assistant", content="", tool_calls=[call], stop_reason=stop_reason)
        return Message(role="assistant", content=content, tool_calls=[], stop_reason=stop_reason)


def _normalize_call(call: Mapping[str, Any]) -> ToolCall:
    # Accept the OpenAI shape {"type": "function", "function": {"name", "arguments"}} as well.
    fn = call.get("function", call)
    if "name" not in fn:
        raise ValueError(f"tool call without a name: {dict(call)!r}")
    return ToolCall(name=fn["name"], arguments=fn.get("arguments", {}))


def format_tool_call(call: ToolCall) -> str:
    """Text of a tool call as Llama 3.1 writes it after <|python_tag|>."""
    name, args = call["name"], call["arguments"]
    if name in BUILTIN_TOOLS:
        query = args["query"] if isinstance(args, Mapping) else args
        return f'{name}.call(query="{query}")'
    if name == CODE_INTERPRETER:
        return args["code"] if isinstance(args, Mapping) else args
    return json.dumps({"type": "function", "name": name, "parameters": args})


def parse_tool_call(content: str, tagged: bool) -> ToolCall | None:
    """The tool call in an assistant message, if any (built-in, JSON, <function=...>, python list, code)."""
    if m := _FUNCTION_TAG.search(content):
        args = _json_object(m.group("args"))
        if args is not None:
            return ToolCall(name=m.group("name"), arguments=args)
    obj = _json_object(content)
    if obj is not None and isinstance(obj.get("name"), str):
        return ToolCall(name=obj["name"], arguments=obj.get("parameters", obj.get("arguments", {})))
    if m := _BUILTIN_CALL.search(content):
        return ToolCall(name=m.group("name"), arguments={"query": m.group("query")})
    if (call := _python_call_list(content)) is not None:
        return call
    if tagged:
        return ToolCall(name=CODE_INTERPRETER, arguments={"code": content})
    return None


def _json_object(text: str) -> dict[str, Any] | None:
    try:
        obj = json.loads(text)
    except json.JSONDecodeError:
        return None
    return obj if isinstance(obj, dict) else None


def _python_call_list(text: str) -> ToolCall | None:
    """`[f(a=1, b="x")]`, the python_list tool format; the first call only (3.1 makes one call a turn)."""
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError:
        return None
    calls = tree.body.elts if isinstance(tree.body, ast.List) else []
    if not calls or not all(isinstance(c, ast.Call) and isinstance(c.func, ast.Name) for c in calls):
        return None
    first = calls[0]
    try:
        args = {kw.arg: ast.literal_eval(kw.value) for kw in first.keywords if kw.arg}
    except ValueError:
        return None
    return ToolCall(name=first.func.id, arguments=args)


# ---------------------------------------------------------------- jinja chat templates


class TemplateChatFormat:
    """A tokenizer's own jinja chat template, rendered as transformers renders it."""

    def __init__(self, tokenizer: TokenizerLike, template: str, template_vars: Mapping[str, Any] | None = None):
        self.tokenizer = tokenizer
        self.template = _compile(template)
        self.template_vars = dict(template_vars or {})

    def render(self, messages: Sequence[Mapping[str, Any]], add_generation_prompt: bool = False) -> str:
        # transformers drops None-valued keys: templates test for missing keys, not for None.
        clean = [{k: v for k, v in m.items() if v is not None} for m in messages]
        return self.template.render(messages=clean, add_generation_prompt=add_generation_prompt, **self.template_vars)

    def _encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(text, allowed_special="all")

    def encode_prompt(self, messages: Sequence[Mapping[str, Any]]) -> list[int]:
        return self._encode(self.render(messages, add_generation_prompt=True))

    def encode_dialog(self, messages: Sequence[Mapping[str, Any]]) -> tuple[list[int], list[int]]:
        """Mask each assistant reply by rendering the dialog up to its start and up to its end."""
        tokens = self._encode(self.render(messages))
        mask = [0] * len(tokens)
        for i, message in enumerate(messages):
            if message["role"] != "assistant":
                continue
            start = _common_prefix(tokens, self._encode(self.render(messages[:i], add_generation_prompt=True)))
            end = _common_prefix(tokens, self._encode(self.render(messages[: i + 1])))
            end = self._through_stop(tokens, start, end)
            mask[start:end] = [1] * (end - start)
        return tokens, mask

    def _through_stop(self, tokens: list[int], start: int, end: int) -> int:
        # Train up to the reply's end token; what a template writes after it (a newline) is never generated.
        stops = [j for j in range(start, end) if tokens[j] in self.tokenizer.stop_ids]
        return stops[-1] + 1 if stops else end

    def decode_message(self, tokens: Sequence[int]) -> Message:
        tokens = list(tokens)
        stop_reason = "out_of_tokens"
        for i, t in enumerate(tokens):
            if t in self.tokenizer.stop_ids:
                tokens, stop_reason = tokens[:i], "end_of_turn"
                break
        content = self.tokenizer.decode(tokens)
        call = _template_tool_call(content)
        calls = [call] if call is not None else []
        return Message(role="assistant", content=content, tool_calls=calls, stop_reason=stop_reason)


def _template_tool_call(content: str) -> ToolCall | None:
    # Hermes/Qwen-style <tool_call>{json}</tool_call>, else a bare JSON call; a JSON answer that is not a
    # call (no arguments/parameters) stays an answer.
    m = re.search(r"<tool_call>\s*(\{.*?\})\s*</tool_call>", content, re.DOTALL)
    obj = _json_object(m.group(1) if m else content.strip())
    if obj is None or not isinstance(obj.get("name"), str) or not {"arguments", "parameters"} & obj.keys():
        return None
    return ToolCall(name=obj["name"], arguments=obj.get("arguments", obj.get("parameters", {})))


def _common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = min(len(a), len(b))
    return next((i for i in range(n) if a[i] != b[i]), n)


@cache
def _compile(template: str) -> Any:
    """The sandboxed jinja environment transformers uses for chat templates (same globals and filters)."""
    from datetime import datetime

    import jinja2
    from jinja2.ext import loopcontrols
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(message: str) -> None:
        raise jinja2.exceptions.TemplateError(message)

    def tojson(x: Any, ensure_ascii: bool = False, indent: int | None = None, separators=None, sort_keys=False):
        # jinja's own tojson escapes HTML characters, which would change the prompt text.
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
    try:
        return env.from_string(template)
    except jinja2.TemplateSyntaxError as e:
        raise ValueError(f"chat template: jinja syntax error on line {e.lineno}: {e.message}") from None


def load_chat_format(tokenizer: TokenizerLike) -> ChatFormatLike:
    """The tokenizer's own chat template if it has one, else the Llama 3.1 layout if its specials allow."""
    template = getattr(tokenizer, "chat_template", None)
    if template:
        return TemplateChatFormat(tokenizer, template, _template_vars(tokenizer))
    if "<|start_header_id|>" in tokenizer.special_ids:
        return Llama3ChatFormat(tokenizer)
    raise ValueError(f"{tokenizer!r} has neither a chat template nor Llama 3 header tokens")


def _template_vars(tokenizer: TokenizerLike) -> dict[str, Any]:
    # transformers passes the special-token strings (bos_token, eos_token, ...) to every template.
    names = getattr(tokenizer, "special_tokens_map", {})
    return {k: v for k, v in names.items() if v is not None}
