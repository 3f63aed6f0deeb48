"""The tool-execution loop and `herd chat --tools` with a scripted model: a python_tag call, then a search
call, then an answer; the tools really ran (their results are in the ipython messages)."""

from __future__ import annotations

import argparse
import json

import pytest

import herd.cli.chat as chat_cli
from herd.sandbox import SandboxUnavailable, require_isolation
from herd.tokenizer.bpe import Tokenizer
from herd.tokenizer.chat import Llama3ChatFormat
from herd.tools import CallParseError, SearchIndex, Toolbox, call_message, extract_call, run_tool_loop
from herd.tools.python import PythonTool

CODE = {"code": "sum(i * i for i in range(10))"}
PY_CALL = {"role": "assistant", "content": "", "stop_reason": "end_of_message",
           "tool_calls": [{"name": "code_interpreter", "arguments": CODE}]}  # fmt: skip
SEARCH_CALL = {"role": "assistant", "content": '<tool_call>{"name": "search", "arguments": {"query": "1908 address"}}'
               "</tool_call>"}  # fmt: skip
ANSWER = {"role": "assistant", "content": "285, and Theodore Roosevelt gave the 1908 address."}


@pytest.fixture
def isolated():
    try:
        require_isolation()
    except SandboxUnavailable:
        pytest.skip("this kernel cannot isolate tool code")


@pytest.fixture(scope="module")
def box(sotu_slice):
    return Toolbox(search=SearchIndex.from_path(sotu_slice), python=PythonTool())


def test_python_then_search_then_answer(box, isolated, scripted):
    model = scripted([PY_CALL, SEARCH_CALL, ANSWER])
    t = run_tool_loop(model, [{"role": "user", "content": "q"}], box)
    assert t.status == "answer" and t.answer == ANSWER["content"]
    tool_msgs = [m["content"] for m in t.messages if m["role"] == "ipython"]
    assert tool_msgs[0] == "285"  # the sandbox computed it
    assert tool_msgs[1].startswith("[1] 1908 address, Theodore Roosevelt (R): ")  # BM25 found the speech
    assert [m["role"] for m in model.seen[2]] == ["user", "assistant", "ipython", "assistant", "ipython"]


@pytest.mark.parametrize(
    ("replies", "status"),
    [([{"role": "assistant", "content": "<tool_call>{not json</tool_call>"}], "parse_error"),
     ([SEARCH_CALL, SEARCH_CALL], "loop"),
     ([{"role": "assistant", "content": "cut", "stop_reason": "out_of_tokens"}], "out_of_tokens")],
)  # fmt: skip
def test_bad_trajectories_end_with_a_status(box, replies, status, scripted):
    assert run_tool_loop(scripted(replies), [{"role": "user", "content": "q"}], box).status == status


def test_step_limit(box, scripted):
    calls = [{"role": "assistant", "content": f'wolfram_alpha.call(query="{i}+1")'} for i in range(3)]
    t = run_tool_loop(scripted(calls), [{"role": "user", "content": "q"}], box, max_steps=2)
    assert t.status == "max_steps" and [m["content"] for m in t.messages if m["role"] == "ipython"] == ["1", "2"]


def test_tool_errors_go_back_to_the_model(box, scripted):
    bad = {"role": "assistant", "content": '<tool_call>{"name": "calculator", "arguments": {"x": "1"}}</tool_call>'}
    t = run_tool_loop(scripted([bad, ANSWER]), [{"role": "user", "content": "q"}], box)
    assert t.status == "answer" and t.results[0].error == "bad_arguments"
    assert "missing argument:expression" in t.messages[2]["content"]


def test_call_formats():
    assert extract_call({"content": '<tool_call>[{"name": "f", "arguments": {"a": 1}}]</tool_call>'}) == {
        "name": "f", "arguments": {"a": 1}}  # fmt: skip
    assert extract_call({"content": 'brave_search.call(query="whales")'})["arguments"] == {"query": "whales"}
    assert extract_call({"content": "<|python_tag|>print(1)"}) == {"name": "code_interpreter",
                                                                   "arguments": {"code": "print(1)"}}  # fmt: skip
    assert extract_call({"content": "The answer is 4."}) is None
    with pytest.raises(CallParseError):
        extract_call({"content": "<tool_call>{'single': quotes}</tool_call>"})


def test_llama3_call_message_round_trips():
    fmt = Llama3ChatFormat(Tokenizer({bytes([i]): i for i in range(256)}))
    msg = call_message({"name": "search", "arguments": {"query": "1908 address"}}, fmt)
    tokens, _ = fmt.encode_message(msg)
    body = tokens[tokens.index(fmt.python_tag) :]
    assert body[-1] == fmt.eom  # a call awaiting its result ends with <|eom_id|>
    back = fmt.decode_message(body)
    assert extract_call(back) == {"name": "brave_search", "arguments": {"query": "1908 address"}}


class _Tok:
    stop_ids = frozenset({0})

    def decode(self, ids):
        return ""


def _args(**kw):
    base = dict(system=None, tools="python,search,calculator", corpus="", unprotected="", max_tool_steps=4,
                guard=None, message=["q"], model="smollm2", tokenizer=None)  # fmt: skip
    return argparse.Namespace(**(base | kw))


def test_chat_tools_runs_end_to_end(box, isolated, capsys, scripted):
    session = chat_cli.ChatSession(None, _Tok(), None, _args(), toolbox=box)
    assert json.loads(session.messages[0]["content"].splitlines()[-1])["name"] == "calculator"
    session.generate = scripted([PY_CALL, SEARCH_CALL, ANSWER])
    assert session.reply("sum of squares below 10, and who gave the 1908 address?") == ANSWER
    out = capsys.readouterr().out
    assert "ipython> 285" in out and "ipython> [1] 1908 address, Theodore Roosevelt" in out
    assert [m["role"] for m in session.messages].count("ipython") == 2


def test_chat_tools_refuses_without_isolation(monkeypatch, capsys, sotu_slice):
    def refuse(accepted):
        if "files" not in accepted:
            raise SandboxUnavailable("no isolation for files; Pass --unprotected files to run it anyway")
        return ["files"]

    monkeypatch.setattr("herd.tools.python.require_isolation", refuse)
    monkeypatch.setattr(chat_cli, "load_model_and_tokenizer", lambda a: pytest.fail("loaded a model"))
    assert chat_cli.chat_command(_args(corpus=str(sotu_slice))) == 2
    assert "--unprotected files" in capsys.readouterr().err
    box = chat_cli._toolbox(_args(corpus=str(sotu_slice), unprotected="files"))
    assert box is not None and box.names == ["python", "search", "calculator"]
    assert "unprotected against files" in capsys.readouterr().err
