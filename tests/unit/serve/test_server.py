"""`herd serve` over loopback: the openai client parses its answers and streams, bad requests get 4xx JSON,
the bounded queue answers 429, timeouts abort, 200 concurrent requests all come back once, and shutdown
lets in-flight requests finish."""

import asyncio
import threading
import time

import pytest
from unit.serve.tiny import running_server

from herd.model import generate

openai = pytest.importorskip("openai")
httpx = pytest.importorskip("httpx")

CHAT = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Name a colour."}]


def _client(url: str):
    return openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0)


def _greedy_text(tiny, prompt: str, n: int) -> str:
    model, tok = tiny
    return tok.decode(generate(model, [tok.encode(prompt)], max_new_tokens=n, stop_ids=sorted(tok.stop_ids))[0])


def test_completions_chat_and_streams_parse_with_the_openai_client(server, tiny) -> None:
    url, _, _ = server
    client = _client(url)
    assert [m.id for m in client.models.list().data] == ["tiny"]
    out = client.completions.create(model="tiny", prompt="The herd", max_tokens=6, temperature=0)
    assert out.choices[0].text == _greedy_text(tiny, "The herd", 6)
    assert out.usage.prompt_tokens == len("The herd") and out.choices[0].finish_reason in ("length", "stop")
    scored = client.completions.create(model="tiny", prompt="abc", max_tokens=2, temperature=0, logprobs=3, echo=True)
    lp = scored.choices[0].logprobs
    assert scored.choices[0].text.startswith("abc")
    assert (
        lp.token_logprobs[0] is None
        and len(lp.token_logprobs) == 3 + 2
        and all(len(t) == 3 for t in lp.top_logprobs[1:])
    )
    streamed = client.completions.create(model="tiny", prompt="The herd", max_tokens=6, temperature=0, stream=True)
    assert "".join(c.choices[0].text for c in streamed) == out.choices[0].text

    chat = client.chat.completions.create(model="tiny", messages=CHAT, max_tokens=8, temperature=0, logprobs=True)
    assert chat.choices[0].message.role == "assistant" and chat.choices[0].logprobs.content
    chunks = list(client.chat.completions.create(model="tiny", messages=CHAT, max_tokens=8, temperature=0, stream=True))
    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == chat.choices[0].message.content
    assert chunks[-1].choices[0].finish_reason == chat.choices[0].finish_reason


def test_n_samples_seed_and_stop_strings(server, tiny) -> None:
    url, _, _ = server
    client = _client(url)
    kw = dict(model="tiny", prompt=["one", "two"], max_tokens=8, temperature=1.0, n=3, seed=4)
    a, b = client.completions.create(**kw), client.completions.create(**kw)
    assert [c.index for c in a.choices] == list(range(6))
    assert [c.text for c in a.choices] == [c.text for c in b.choices]  # seeded: reproducible
    full = _greedy_text(tiny, "stop here", 12)
    stop = full[3:5]
    cut = client.completions.create(model="tiny", prompt="stop here", max_tokens=12, temperature=0, stop=[stop])
    assert cut.choices[0].text == full[: full.find(stop)] and cut.choices[0].finish_reason == "stop"
    stream = client.completions.create(
        model="tiny", prompt="stop here", max_tokens=12, temperature=0, stop=stop, stream=True
    )
    assert "".join(c.choices[0].text for c in stream) == cut.choices[0].text


@pytest.mark.parametrize(
    ("path", "body", "status"),
    [
        ("/v1/completions", {"prompt": "hi"}, 400),  # no model
        ("/v1/completions", {"model": "tiny", "prompt": "hi", "temperature": -1}, 400),
        ("/v1/completions", {"model": "tiny", "prompt": "hi", "n": 0}, 400),
        ("/v1/completions", {"model": "tiny", "prompt": ""}, 400),
        ("/v1/completions", {"model": "tiny", "prompt": [1, 9999]}, 400),  # token id outside the vocabulary
        ("/v1/completions", {"model": "tiny", "prompt": "x" * 600}, 400),  # longer than the context
        ("/v1/completions", {"model": "other", "prompt": "hi"}, 404),
        ("/v1/completions", "not json", 400),
        ("/v1/chat/completions", {"model": "tiny", "messages": []}, 400),
        ("/v1/chat/completions", {"model": "tiny", "messages": [{"role": "robot", "content": "x"}]}, 400),
        ("/v1/chat/completions", {"model": "tiny", "messages": CHAT, "tools": [{"type": "function"}]}, 400),
        ("/v1/nothing", {}, 404),
    ],
)
def test_bad_requests_get_a_4xx_json_error(server, path, body, status) -> None:
    url, _, _ = server
    kw = {"content": body, "headers": {"content-type": "application/json"}} if isinstance(body, str) else {"json": body}
    r = httpx.post(url + path, **kw)
    assert r.status_code == status
    assert r.json()["error"]["message"]


def test_a_full_queue_answers_429_and_a_slow_request_times_out(tiny) -> None:
    with running_server(*tiny, max_pending=2, timeout_s=1.0) as (url, state, _):
        state.runner.pause()  # nothing is generated: requests wait in the queue
        results = []
        waiting = [
            threading.Thread(target=lambda: results.append(httpx.post(f"{url}/v1/completions", **_slow())))
            for _ in range(2)
        ]
        for t in waiting:
            t.start()
        _wait_for(lambda: state.pending == 2)
        busy = httpx.post(f"{url}/v1/completions", **_slow())
        assert busy.status_code == 429 and "busy" in busy.json()["error"]["message"]
        for t in waiting:
            t.join(10)
        assert [r.status_code for r in results] == [408, 408]
        state.runner.resume()
        _wait_for(lambda: not state.runner.engine.has_work())  # the timed-out requests were aborted
        ok = httpx.post(f"{url}/v1/completions", **_slow())
        assert ok.status_code == 200 and state.pending == 0


def test_200_concurrent_requests_come_back_once_each(server, tiny) -> None:
    url, _, _ = server
    prompts = [f"request {i}" for i in range(20)]
    expected = {p: _greedy_text(tiny, p, 4) for p in prompts}

    async def one(client, i: int) -> tuple[int, dict]:
        body = {"model": "tiny", "prompt": prompts[i % 20], "max_tokens": 4, "temperature": 0, "user": str(i)}
        r = await client.post("/v1/completions", json=body, timeout=60)
        return i, r.json()

    async def all_of_them():
        async with httpx.AsyncClient(base_url=url, limits=httpx.Limits(max_connections=32)) as client:
            return await asyncio.gather(*(one(client, i) for i in range(200)))

    answers = asyncio.run(all_of_them())
    assert sorted(i for i, _ in answers) == list(range(200))
    assert len({a["id"] for _, a in answers}) == 200
    for i, a in answers:
        assert a["choices"][0]["text"] == expected[prompts[i % 20]]


def test_shutdown_lets_in_flight_requests_finish(tiny) -> None:
    with running_server(*tiny) as (url, state, server):
        state.runner.pause()
        result = []
        t = threading.Thread(target=lambda: result.append(httpx.post(f"{url}/v1/completions", **_slow(20))))
        t.start()
        _wait_for(lambda: state.pending == 1)
        server.should_exit = True  # what SIGTERM does
        time.sleep(0.3)
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"{url}/health")  # no new connections
        state.runner.resume()
        t.join(30)
    assert result[0].status_code == 200
    assert result[0].json()["choices"][0]["text"] == _greedy_text(tiny, "wait", 20)


def _slow(max_tokens: int = 4) -> dict:
    return {"json": {"model": "tiny", "prompt": "wait", "max_tokens": max_tokens, "temperature": 0}, "timeout": 30}


def _wait_for(cond, seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not cond():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.02)
