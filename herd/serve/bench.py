"""`herd bench serve`: throughput and latency of an OpenAI-compatible completions endpoint under load.

`concurrency` clients send `requests` streaming `/v1/completions` requests in total, each starting its next
request when the last finished (a closed loop, as vLLM's and llama.cpp's serving benchmarks run). Per
request: time to first token (TTFT), the gaps between streamed chunks (inter-token latency, ITL), end-to-end
latency and the completion tokens the server reports (`stream_options.include_usage`). The summary has
requests/s, output tokens/s and p50/p99 of each latency.

The same load runs against herd's engine (continuous batching over a paged KV cache) and a peer in the
same run: another server's URL (`--peer-url`: vLLM, llama.cpp's server, ...) or, by default, the same
engine admitting one sequence at a time — serving without batching.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from herd.model import Transformer
from herd.model.engine import EngineConfig
from herd.serve.app import ServeConfig, ServeState, build_app
from herd.tokenizer import TokenizerLike


@dataclass
class RequestStat:
    ttft_s: float
    latency_s: float
    completion_tokens: int
    gaps_s: list[float] = field(default_factory=list)


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0–100) by linear interpolation, as numpy's default."""
    if not values:
        return float("nan")
    v = sorted(values)
    pos = (len(v) - 1) * q / 100
    lo = int(pos)
    hi = min(lo + 1, len(v) - 1)
    return v[lo] + (v[hi] - v[lo]) * (pos - lo)


async def _one(client: Any, url: str, model: str, prompt: str, max_tokens: int) -> RequestStat:
    body = {"model": model, "prompt": prompt, "max_tokens": max_tokens, "temperature": 0.0, "stream": True,
            "stream_options": {"include_usage": True}}  # fmt: skip
    start = time.perf_counter()
    first, last, gaps, tokens = None, None, [], 0
    async with client.stream("POST", f"{url}/v1/completions", json=body) as response:
        if response.status_code != 200:
            raise RuntimeError(f"{url}: HTTP {response.status_code}: {(await response.aread())[:200]!r}")
        async for line in response.aiter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            if chunk.get("usage"):
                tokens = chunk["usage"]["completion_tokens"]
            if any(c.get("text") for c in chunk.get("choices", [])):
                now = time.perf_counter()
                first = first if first is not None else now
                if last is not None:
                    gaps.append(now - last)
                last = now
    end = time.perf_counter()
    return RequestStat((first or end) - start, end - start, tokens, gaps)


async def load(url: str, model: str, prompts: Sequence[str], concurrency: int, max_tokens: int) -> dict[str, Any]:
    """Send every prompt once through `concurrency` closed-loop clients; the summary of what came back."""
    import httpx

    queue: asyncio.Queue[str] = asyncio.Queue()
    for p in prompts:
        queue.put_nowait(p)
    stats: list[RequestStat] = []

    async def client_loop(client: Any) -> None:
        while not queue.empty():
            stats.append(await _one(client, url, model, queue.get_nowait(), max_tokens))

    start = time.perf_counter()
    async with httpx.AsyncClient(timeout=600) as client:
        await asyncio.gather(*(client_loop(client) for _ in range(concurrency)))
    wall = time.perf_counter() - start
    return summarize(stats, wall)


def summarize(stats: Sequence[RequestStat], wall_s: float) -> dict[str, Any]:
    gaps = [g for s in stats for g in s.gaps_s]
    ms = lambda xs, q: round(1000 * percentile(xs, q), 2)
    return {
        "requests": len(stats),
        "wall_s": round(wall_s, 3),
        "requests_per_s": len(stats) / wall_s,
        "output_tokens_per_s": sum(s.completion_tokens for s in stats) / wall_s,
        "ttft_ms": {"p50": ms([s.ttft_s for s in stats], 50), "p99": ms([s.ttft_s for s in stats], 99)},
        "itl_ms": {"p50": ms(gaps, 50), "p99": ms(gaps, 99)},
        "latency_ms": {"p50": ms([s.latency_s for s in stats], 50), "p99": ms([s.latency_s for s in stats], 99)},
    }


@contextlib.contextmanager
def running_server(model: Transformer, tokenizer: TokenizerLike, cfg: ServeConfig) -> Iterator[str]:
    """A herd server on a free loopback port in a thread (uvicorn); yields its base URL."""
    import uvicorn

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(build_app(ServeState(model, tokenizer, cfg)), log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(60)
        sock.close()


def bench_serve(
    model: Transformer,
    tokenizer: TokenizerLike,
    prompts: Sequence[str],
    concurrency: int = 8,
    max_tokens: int = 32,
    peer_url: str = "",
    peer_model: str = "",
    engine: EngineConfig | None = None,
) -> dict[str, Any]:
    """herd's engine and the peer under the same load, one after the other; rows and herd / peer ratios."""
    engine = engine or EngineConfig(max_batch=max(64, concurrency))
    rows: dict[str, Any] = {}
    with running_server(model, tokenizer, ServeConfig(name="herd", engine=engine)) as url:
        rows["herd engine"] = asyncio.run(load(url, "herd", prompts, concurrency, max_tokens))
    if peer_url:
        rows["peer"] = asyncio.run(load(peer_url, peer_model or "peer", prompts, concurrency, max_tokens))
    else:
        one = EngineConfig(**{**asdict(engine), "max_batch": 1})
        with running_server(model, tokenizer, ServeConfig(name="herd", engine=one)) as url:
            rows["one sequence at a time"] = asyncio.run(load(url, "herd", prompts, concurrency, max_tokens))
    herd, peer = rows["herd engine"], next(v for k, v in rows.items() if k != "herd engine")
    ratios = {
        "output tokens/s": herd["output_tokens_per_s"] / peer["output_tokens_per_s"],
        "p50 latency (peer / herd)": peer["latency_ms"]["p50"] / herd["latency_ms"]["p50"],
    }
    return {"rows": rows, "ratios": ratios, "setup": {"concurrency": concurrency, "requests": len(prompts),
            "max_tokens": max_tokens, "peer": peer_url or "herd engine, max_batch=1"}}  # fmt: skip
