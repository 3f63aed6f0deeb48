"""JSON function definitions [P §4.3.5 zero-shot tool use], argument checks and the AST-match call check.

A definition is the JSON-schema shape Llama 3.1 and OpenAI use:

    {"name": "get_weather", "description": "...",
     "parameters": {"type": "object", "properties": {"city": {"type": "string"}, ...}, "required": ["city"]}}

`check_arguments` says why a call does not fit its definition (the pipeline's drop reasons);
`ast_match` is the Berkeley Function-Calling Leaderboard's AST check: the call's function name must equal
the expected one, every required parameter must be present, no unknown parameter may appear, and each
value must equal one of the expected values for that parameter (an optional parameter lists "" when it
may be left out). Strings compare case-insensitively after stripping; numbers compare by value
(an integer expected where a float is given matches when equal).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from herd.tokenizer.chat import ToolCall

_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "array": (list,),
    "object": (dict,),
}


def check_definition(fn: Mapping[str, Any], where: str = "function") -> None:
    """Raise ValueError naming the field when `fn` is not a usable function definition."""
    if not isinstance(fn.get("name"), str) or not fn["name"]:
        raise ValueError(f"{where}: field 'name': expected a non-empty string")
    params = fn.get("parameters", {})
    if not isinstance(params, Mapping) or not isinstance(params.get("properties", {}), Mapping):
        raise ValueError(f"{where}: field 'parameters.properties': expected an object")
    for pname, spec in params.get("properties", {}).items():
        if spec.get("type") not in _TYPES:
            raise ValueError(f"{where}: field 'parameters.properties.{pname}.type': {spec.get('type')!r} unknown")
    unknown = set(params.get("required", [])) - set(params.get("properties", {}))
    if unknown:
        raise ValueError(f"{where}: field 'parameters.required': {sorted(unknown)} not in properties")


def _type_ok(value: Any, spec: Mapping[str, Any]) -> bool:
    kind = spec.get("type")
    if kind in ("integer", "number") and isinstance(value, bool):
        return False  # JSON schema: true is not a number
    if kind == "integer" and isinstance(value, float):
        return value.is_integer()
    if not isinstance(value, _TYPES.get(kind, (object,))):
        return False
    return "enum" not in spec or value in spec["enum"]


def check_arguments(fn: Mapping[str, Any], arguments: Any) -> str | None:
    """None when `arguments` fit the definition, else a reason: not_an_object, missing_argument,
    unknown_argument or bad_argument_type (each with the parameter name after a colon)."""
    if not isinstance(arguments, Mapping):
        return "not_an_object"
    params = fn.get("parameters", {})
    props: Mapping[str, Any] = params.get("properties", {})
    for name in params.get("required", []):
        if name not in arguments:
            return f"missing_argument:{name}"
    for name, value in arguments.items():
        if name not in props:
            return f"unknown_argument:{name}"
        if not _type_ok(value, props[name]):
            return f"bad_argument_type:{name}"
    return None


def check_call(call: ToolCall | None, functions: Sequence[Mapping[str, Any]]) -> str | None:
    """None when `call` names a defined function with valid arguments, else the drop reason."""
    if call is None:
        return "no_call"
    defined = {f["name"]: f for f in functions}
    if call["name"] not in defined:
        return "undefined_function"
    reason = check_arguments(defined[call["name"]], call["arguments"])
    return f"invalid_arguments:{reason}" if reason else None


def _value_eq(got: Any, want: Any) -> bool:
    if isinstance(want, str) and isinstance(got, str):
        return got.strip().lower() == want.strip().lower()
    if isinstance(want, bool) or isinstance(got, bool):
        return got is want
    if isinstance(want, (int, float)) and isinstance(got, (int, float)):
        return float(got) == float(want)
    if isinstance(want, list) and isinstance(got, list):
        return len(got) == len(want) and all(_value_eq(g, w) for g, w in zip(got, want, strict=True))
    if isinstance(want, dict) and isinstance(got, dict):
        return got.keys() == want.keys() and all(_value_eq(got[k], want[k]) for k in want)
    return got == want


def ast_match(
    call: ToolCall | None, expected_name: str, expected: Mapping[str, Sequence[Any]], fn: Mapping[str, Any]
) -> str | None:
    """None when `call` matches (BFCL AST check), else why not: no_call, wrong_function, missing_argument,
    unknown_argument, bad_argument_type or wrong_value (with the parameter name)."""
    if call is None:
        return "no_call"
    if call["name"] != expected_name:
        return "wrong_function"
    args = call["arguments"]
    if reason := check_arguments(fn, args):
        return reason
    assert isinstance(args, Mapping)
    for name, allowed in expected.items():
        if name not in args:
            if "" not in allowed:
                return f"missing_argument:{name}"
        elif not any(_value_eq(args[name], a) for a in allowed if a != ""):
            return f"wrong_value:{name}"
    return None
