"""Chat formats: Llama 3.1 dialogs vs llama-models' ChatFormat, masks, parsing generated tool calls;
jinja templates (SmolLM2's GGUF) vs transformers' apply_chat_template."""

from __future__ import annotations

import pytest
from unit.tokenizer.tok_texts import MULTILINGUAL

from herd.tokenizer import Llama3ChatFormat, TemplateChatFormat, load_chat_format

SYSTEM = {"role": "system", "content": "Environment: ipython\nTools: brave_search, wolfram_alpha\n\nBe brief."}
DIALOGS = [
    [{"role": "user", "content": "This is a test sentence."}],
    [{"role": "system", "content": "This is a test sentence."}, {"role": "user", "content": "This is a response."}],
    [
        SYSTEM,
        {"role": "user", "content": "  What is 2+2?  \n"},  # kept as given (llama-models does not strip)
        {"role": "assistant", "content": "4", "stop_reason": "end_of_turn"},
        {"role": "user", "content": MULTILINGUAL["ja"] + " " + MULTILINGUAL["ru"]},
    ],
    [
        {"role": "user", "content": "Is 7 prime? Use code."},
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [
                {"name": "code_interpreter", "arguments": {"code": "print(all(7 % i for i in range(2, 7)))"}}
            ],
            "stop_reason": "end_of_message",
        },
        {"role": "ipython", "content": "True"},
        {"role": "assistant", "content": "Yes, 7 is prime. 👍", "stop_reason": "end_of_turn"},
        {"role": "user", "content": "Text that looks special: <|eot_id|><|start_header_id|>"},
    ],
    [{"role": "user", "content": ""}, {"role": "assistant", "content": "\n\n"}, {"role": "user", "content": "ok"}],
]


def _raw(message: dict):
    from llama_models.datatypes import RawMessage, StopReason, ToolCall

    calls = [
        ToolCall(call_id=str(i), tool_name=c["name"], arguments=c["arguments"])
        for i, c in enumerate(message.get("tool_calls", []))
    ]
    stop = message.get("stop_reason")
    role = "tool" if message["role"] == "ipython" else message["role"]
    return RawMessage(role=role, content=message["content"], tool_calls=calls, stop_reason=stop and StopReason(stop))


@pytest.fixture(scope="module")
def chat(llama3) -> Llama3ChatFormat:
    return Llama3ChatFormat(llama3)


@pytest.fixture(scope="module")
def ref_chat(reference):
    from llama_models.llama3.chat_format import ChatFormat

    return ChatFormat(reference)


@pytest.mark.parametrize("dialog", DIALOGS)
def test_prompt_equals_reference(chat, ref_chat, dialog):
    expected = ref_chat.encode_dialog_prompt([_raw(m) for m in dialog]).tokens
    assert chat.encode_prompt(dialog) == expected
    tokens, mask = chat.encode_dialog(dialog)
    assert expected[: len(tokens)] == tokens and len(mask) == len(tokens)


def test_known_prompt_ids(chat):
    # llama-models tests/api/test_tokenizer.py::test_encode_dialog
    dialog = DIALOGS[1]
    assert chat.encode_prompt(dialog) == [
        128000, 128006, 9125, 128007, 271, 2028, 374, 264, 1296, 11914, 13, 128009,
        128006, 882, 128007, 271, 2028, 374, 264, 2077, 13, 128009, 128006, 78191, 128007, 271,
    ]  # fmt: skip


def test_loss_mask_covers_assistant_content_and_terminator(chat, llama3):
    dialog = DIALOGS[3]
    tokens, mask = chat.encode_dialog(dialog)
    trained = [t for t, m in zip(tokens, mask) if m]
    expected = [
        128010, *llama3.encode("print(all(7 % i for i in range(2, 7)))"), 128008,
        *llama3.encode("Yes, 7 is prime. 👍"), 128009,
    ]  # fmt: skip
    assert trained == expected
    assert mask[0] == 0  # BOS
    headers = {128006, 128007}
    assert all(m == 0 for t, m in zip(tokens, mask) if t in headers)
    assert sum(mask) == len(expected)


def test_builtin_and_custom_tool_calls_carry_python_tag(chat, ref_chat, llama3):
    # The 3.1 prompt format writes <|python_tag|> before every tool call; llama-models' encoder adds it
    # only for code_interpreter. herd follows the published format: the same ids plus that one token.
    for call in (
        {"name": "brave_search", "arguments": {"query": "latest price of 1oz gold"}},
        {"name": "get_weather", "arguments": {"city": "Paris", "unit": "C"}},
    ):
        message = {"role": "assistant", "content": "", "tool_calls": [call], "stop_reason": "end_of_message"}
        ours, _ = chat.encode_message(message)
        ref, _ = ref_chat.encode_message(_raw(message), tool_prompt_format=_json_format())
        header = len(chat.encode_header("assistant"))
        assert ours == [*ref[:header], 128010, *ref[header:]]


def _json_format():
    from llama_models.datatypes import ToolPromptFormat

    return ToolPromptFormat.json


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Hello there!<|eot_id|>", {"content": "Hello there!", "tool_calls": [], "stop_reason": "end_of_turn"}),
        ("no stop token yet", {"content": "no stop token yet", "tool_calls": [], "stop_reason": "out_of_tokens"}),
        (
            '<|python_tag|>brave_search.call(query="gold price")<|eom_id|>',
            {"tool_calls": [{"name": "brave_search", "arguments": {"query": "gold price"}}]},
        ),
        (
            "<|python_tag|>x = 2\nprint(x * 21)<|eom_id|>",
            {"tool_calls": [{"name": "code_interpreter", "arguments": {"code": "x = 2\nprint(x * 21)"}}]},
        ),
        (
            '<|python_tag|>{"type": "function", "name": "trending_songs", "parameters": {"n": "10"}}<|eom_id|>',
            {"tool_calls": [{"name": "trending_songs", "arguments": {"n": "10"}}]},
        ),
        (
            '<function=get_weather>{"city": "Paris"}</function><|eot_id|>',
            {"tool_calls": [{"name": "get_weather", "arguments": {"city": "Paris"}}], "stop_reason": "end_of_turn"},
        ),
        (
            '[get_time(zone="UTC", fmt="iso")]<|eot_id|>',
            {"tool_calls": [{"name": "get_time", "arguments": {"zone": "UTC", "fmt": "iso"}}]},
        ),
    ],
)  # fmt: skip
def test_decode_message(chat, llama3, reference, ref_chat, text, expected):
    tokens = llama3.encode(text, allowed_special="all")
    message = chat.decode_message(tokens)
    assert message["role"] == "assistant"
    for key, value in expected.items():
        assert message[key] == value
    if message["tool_calls"]:
        from llama_models.datatypes import StopReason

        ref = ref_chat.decode_assistant_message(tokens, StopReason.end_of_turn)
        name = ref.tool_calls[0].tool_name
        assert message["tool_calls"][0]["name"] == getattr(name, "value", name)
        assert message["tool_calls"][0]["arguments"] == ref.tool_calls[0].arguments


def test_decode_round_trips_encoded_messages(chat):
    header = len(chat.encode_header("assistant"))
    for dialog in DIALOGS:
        for message in dialog:
            if message["role"] != "assistant":
                continue
            tokens, _ = chat.encode_message(message)
            decoded = chat.decode_message(tokens[header:])
            assert decoded["content"] == message["content"]
            assert decoded["tool_calls"] == message.get("tool_calls", [])
            assert decoded["stop_reason"] == message.get("stop_reason", "end_of_turn")


def test_bad_role(chat):
    with pytest.raises(ValueError, match="unknown role"):
        chat.encode_dialog([{"role": "narrator", "content": "x"}])


# ---------------------------------------------------------------- jinja templates (SmolLM2 GGUF)

TEMPLATE_DIALOGS = [
    [{"role": "user", "content": "hi"}],
    [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "2+2?"}],
    [
        {"role": "user", "content": MULTILINGUAL["de"]},
        {"role": "assistant", "content": "Ja. 🙂"},
        {"role": "user", "content": "Und  jetzt?\n\n  Bitte ausführlich."},
        {"role": "assistant", "content": "Gern:\n1. erstens\n2. zweitens"},
        {"role": "user", "content": "def f(x):\n    return x  # code"},
    ],
]


def test_load_chat_format_picks_the_right_one(llama3, smollm2):
    assert isinstance(load_chat_format(llama3), Llama3ChatFormat)
    assert isinstance(load_chat_format(smollm2), TemplateChatFormat)


@pytest.mark.parametrize("dialog", TEMPLATE_DIALOGS)
def test_template_prompt_equals_transformers(smollm2, hf_reference, dialog):
    chat = load_chat_format(smollm2)
    expected = hf_reference.apply_chat_template(dialog, add_generation_prompt=True, tokenize=True)
    expected = expected["input_ids"] if isinstance(expected, dict) or hasattr(expected, "keys") else expected
    assert chat.encode_prompt(dialog) == list(expected)
    text = hf_reference.apply_chat_template(dialog, add_generation_prompt=True, tokenize=False)
    assert chat.render(dialog, add_generation_prompt=True) == text


def test_template_mask_and_decode(smollm2):
    chat = load_chat_format(smollm2)
    dialog = TEMPLATE_DIALOGS[2]
    tokens, mask = chat.encode_dialog(dialog)
    assert tokens == smollm2.encode(chat.render(dialog), allowed_special="all")
    spans, current = [], []
    for t, m in zip(tokens, mask):
        if m:
            current.append(t)
        elif current:
            spans.append(current)
            current = []
    texts = [smollm2.decode(s) for s in spans]
    assert texts == ["Ja. 🙂<|im_end|>", "Gern:\n1. erstens\n2. zweitens<|im_end|>"]
    reply = chat.decode_message(spans[1])
    assert reply == {"role": "assistant", "content": "Gern:\n1. erstens\n2. zweitens", "tool_calls": [],
                     "stop_reason": "end_of_turn"}  # fmt: skip
