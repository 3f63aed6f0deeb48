"""Argument checks agree with jsonschema (the reference validator) and the BFCL AST match."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from herd.tools.functions import ast_match, check_arguments, check_call, check_definition

PROPS = {"restaurant": {"type": "string"}, "people": {"type": "integer"}, "tip": {"type": "number"},
         "vegan": {"type": "boolean"}, "unit": {"type": "string", "enum": ["a", "b"]}}  # fmt: skip
FN = {"name": "book_table", "parameters": {"type": "object", "properties": PROPS, "required": ["restaurant", "people"]}}

values = st.one_of(st.none(), st.booleans(), st.integers(-5, 5), st.floats(-5, 5, allow_nan=False), st.text(max_size=3),
                   st.sampled_from(["a", "b"]), st.lists(st.integers(), max_size=2))  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(["restaurant", "people", "tip", "vegan", "unit", "extra"]), values))
def test_agrees_with_jsonschema(args):
    jsonschema = pytest.importorskip("jsonschema")
    schema = {**FN["parameters"], "additionalProperties": False}
    assert (check_arguments(FN, args) is None) == jsonschema.Draft202012Validator(schema).is_valid(args)


def test_reasons():
    assert check_call(None, [FN]) == "no_call"
    assert check_call({"name": "other", "arguments": {}}, [FN]) == "undefined_function"
    assert check_call({"name": "book_table", "arguments": {"restaurant": "Koi"}}, [FN]) == (
        "invalid_arguments:missing_argument:people"
    )
    assert check_call({"name": "book_table", "arguments": {"restaurant": "Koi", "people": "2"}}, [FN]) == (
        "invalid_arguments:bad_argument_type:people"
    )
    with pytest.raises(ValueError, match=r"parameters\.required"):
        check_definition({"name": "f", "parameters": {"properties": {}, "required": ["x"]}})


def test_ast_match():
    want = {"restaurant": ["Koi"], "people": [4], "tip": [""]}
    ok = {"name": "book_table", "arguments": {"restaurant": " koi ", "people": 4.0}}
    assert ast_match(ok, "book_table", want, FN) is None
    assert ast_match({**ok, "name": "x"}, "book_table", want, FN) == "wrong_function"
    assert ast_match({"name": "book_table", "arguments": {"restaurant": "Koi", "people": 5}}, "book_table", want,
                     FN) == "wrong_value:people"  # fmt: skip
    assert ast_match({"name": "book_table", "arguments": {"restaurant": "Koi", "people": 4, "tip": 1}}, "book_table",
                     want, FN) == "wrong_value:tip"  # fmt: skip
