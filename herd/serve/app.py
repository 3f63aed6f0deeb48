"""`herd serve`: an OpenAI-compatible HTTP API over the continuous-batching engine (FastAPI + uvicorn).

    POST /v1/completions        prompt text or token ids; n, logprobs + echo (prompt scoring), stop, seed, stream
    POST /v1/chat/completions   messages in the model's chat format (Llama 3 layout or its own template)
    GET  /v1/models             the one served model
    POST /tokenize, /detokenize, GET /tokenizer_info   what lm-eval's remote tokenizer reads

Bad requests answer 4xx with an OpenAI-style JSON error; more than `max_pending` prompts in flight answer
429; a request running past `timeout_s` is aborted (408). Tool calls (<|python_tag|>) come back as text:
nothing is executed. On shutdown uvicorn stops accepting connections, lets in-flight requests finish, and
only then stops the engine thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.exceptions import HTTPException

from herd.model.engine import Engine, EngineConfig, SamplingParams
from herd.model.transformer import Transformer
from herd.serve import protocol as api
from herd.serve.runner import EngineRunner, Failure, TextStream
from herd.tokenizer.chat import load_chat_format
from herd.tokenizer.protocol import TokenizerLike


@dataclass(frozen=True)
class ServeConfig:
    host: str = "127.0.0.1"
    port: int = 8000
    name: str = "herd"  # the model id clients pass as `model`
    max_pending: int = 256  # prompts queued or running at once; one more is a 429
    timeout_s: float = 600.0  # per request, queueing included
    default_max_tokens: int = 256  # chat requests that give no max_tokens (capped by the context left)
    engine: EngineConfig = field(default_factory=EngineConfig)


class ApiError(Exception):
    def __init__(self, status: int, message: str, param: str | None = None, kind: str = "invalid_request_error"):
        super().__init__(message)
        self.status, self.message, self.param, self.kind = status, message, param, kind


class ServeState:
    """The model, tokenizer and engine thread behind one app, and the count of prompts in flight."""

    def __init__(self, model: Transformer, tokenizer: TokenizerLike, cfg: ServeConfig) -> None:
        self.cfg, self.tokenizer = cfg, tokenizer
        self.max_len = model.cfg.max_seq_len
        self.runner = EngineRunner(Engine(model, cfg.engine))
        self.stop_ids = frozenset(tokenizer.stop_ids)
        self.pending = 0  # touched only from the event loop

    def encode(self, text: str) -> list[int]:
        # A raw completion prompt may carry special tokens as text (a pre-formatted chat, lm-eval's BOS).
        return self.tokenizer.encode(text, allowed_special="all")

    def piece(self, token: int) -> str:
        return self.tokenizer.decode([token])

    def check_model(self, model: str) -> None:
        if model != self.cfg.name:
            raise ApiError(404, f"model '{model}' does not exist; this server serves '{self.cfg.name}'", "model")

    def check(self, prompts: list[list[int]], params: SamplingParams) -> None:
        for prompt in prompts:
            try:
                self.runner.engine.check(prompt, params)
            except ValueError as e:
                raise ApiError(400, str(e)) from None

    @contextlib.contextmanager
    def admitted(self, n_prompts: int) -> Iterator[None]:
        """Count prompts in flight; refuse (429) past the bound rather than queue without limit."""
        if self.pending + n_prompts > self.cfg.max_pending:
            raise ApiError(429, f"server busy: {self.pending} prompts in flight (limit {self.cfg.max_pending})", None)
        self.pending += n_prompts
        try:
            yield
        finally:
            self.pending -= n_prompts

    async def updates(
        self, prompts: list[list[int]], params: SamplingParams, stop: list[str]
    ) -> AsyncIterator[tuple[int, api.Sample, str]]:
        """(choice index, the sample so far, its new text) as tokens arrive, for every prompt's n samples.
        Stops samples at stop strings; whatever is unfinished when the caller leaves is aborted."""
        events: asyncio.Queue = asyncio.Queue()
        handles = [self.runner.submit(p, params, events, tag=i) for i, p in enumerate(prompts)]
        samples = [api.Sample(j) for _ in prompts for j in range(params.n)]
        streams = [TextStream(self.tokenizer.decode, stop) for _ in samples]
        left = len(samples)
        try:
            while left:
                tag, event = await events.get()
                if isinstance(event, Failure):
                    raise ApiError(500, event.message, kind="server_error")
                choice = tag * params.n + event.index
                sample, stream = samples[choice], streams[choice]
                if sample.finish:
                    continue  # a token produced before our abort reached the engine
                delta = self._advance(sample, stream, event)
                if stream.stopped and event.finish is None:
                    self.runner.abort(handles[tag], event.index)
                left -= sample.finish is not None
                yield choice, sample, delta
        finally:
            for handle in handles:
                self.runner.abort(handle)  # a no-op for what already finished

    def _advance(self, sample: api.Sample, stream: TextStream, event: Any) -> str:
        if event.prompt_logprobs is not None:
            sample.prompt_logprobs = event.prompt_logprobs
        delta = ""
        if event.token is not None:
            sample.tokens.append(event.token)
            sample.logprobs.append(event.logprob)
            delta = stream.add(event.token)
        if stream.stopped:
            sample.finish = "stop"
        elif event.finish is not None:
            sample.finish = event.finish
            delta += stream.flush()
        sample.text += delta
        return delta

    async def run(self, prompts: list[list[int]], params: SamplingParams, stop: list[str]) -> list[api.Sample]:
        out: dict[int, api.Sample] = {}
        async for choice, sample, _ in self.updates(prompts, params, stop):
            out[choice] = sample
        return [out[i] for i in sorted(out)]


# ---------------------------------------------------------------------------------------------- the app


def build_app(state: ServeState) -> FastAPI:
    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        state.runner.start()
        yield
        await asyncio.to_thread(state.runner.stop)  # in-flight requests have finished by now

    app = FastAPI(title="herd", lifespan=lifespan)
    app.state.herd = state
    _add_error_handlers(app)
    _add_info_routes(app, state)

    @app.post("/v1/completions")
    async def completions(body: api.CompletionRequest) -> Response:
        state.check_model(body.model)
        prompts = _completion_prompts(state, body.prompt)
        k = body.logprobs
        params = SamplingParams(
            max_tokens=16 if body.max_tokens is None else body.max_tokens,
            temperature=body.temperature,
            top_p=body.top_p,
            n=body.n,
            seed=body.seed,
            stop_ids=state.stop_ids,
            logprobs=k,
            prompt_logprobs=k if body.echo and k is not None else None,
        )
        state.check(prompts, params)
        handler = _stream_completions if body.stream else _complete
        return await handler(state, body, prompts, params)

    @app.post("/v1/chat/completions")
    async def chat_completions(body: api.ChatCompletionRequest) -> Response:
        state.check_model(body.model)
        prompt = _chat_prompt(state, body)
        limit = body.max_completion_tokens if body.max_completion_tokens is not None else body.max_tokens
        if limit is None:
            limit = max(0, min(state.cfg.default_max_tokens, state.max_len - len(prompt)))
        params = SamplingParams(
            max_tokens=limit,
            temperature=body.temperature,
            top_p=body.top_p,
            n=body.n,
            seed=body.seed,
            stop_ids=state.stop_ids,
            logprobs=(body.top_logprobs or 0) if body.logprobs else None,
        )
        state.check([prompt], params)
        handler = _stream_chat if body.stream else _chat
        return await handler(state, body, prompt, params)

    return app


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(request: Request, e: ApiError) -> JSONResponse:
        return JSONResponse(api.error_body(e.message, e.kind, e.param), status_code=e.status)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, e: RequestValidationError) -> JSONResponse:
        where = [".".join(str(x) for x in er.get("loc", ()) if x != "body") or "request body" for er in e.errors()]
        msg = "; ".join(f"{w}: {er['msg']}" for w, er in zip(where[:3], e.errors()))
        return JSONResponse(api.error_body(msg or "invalid request", param=where[0] if where else None), 400)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, e: HTTPException) -> JSONResponse:
        return JSONResponse(api.error_body(str(e.detail)), status_code=e.status_code)


def _add_info_routes(app: FastAPI, state: ServeState) -> None:
    tok = state.tokenizer

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "pending": state.pending}

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        card = {"id": state.cfg.name, "object": "model", "owned_by": "herd", "max_model_len": state.max_len}
        return {"object": "list", "data": [card]}

    @app.post("/tokenize")
    async def tokenize(body: api.TokenizeRequest) -> dict[str, Any]:
        ids = state.encode(body.prompt)
        if body.add_special_tokens and tok.bos_id is not None:
            ids = [tok.bos_id, *ids]
        return {"tokens": ids, "count": len(ids), "max_model_len": state.max_len}

    @app.post("/detokenize")
    async def detokenize(body: api.DetokenizeRequest) -> dict[str, Any]:
        if any(not 0 <= t < tok.vocab_size for t in body.tokens):
            raise ApiError(400, f"token ids must be in [0, {tok.vocab_size})", "tokens")
        return {"prompt": tok.decode(body.tokens)}

    @app.get("/tokenizer_info")
    async def tokenizer_info() -> dict[str, Any]:
        name = lambda i: None if i is None else tok.decode([i])
        return {
            "bos_token": name(tok.bos_id),
            "eos_token": name(tok.eos_id),
            "pad_token": None,
            "chat_template": getattr(tok, "chat_template", None),
            "max_model_len": state.max_len,
        }


# ---------------------------------------------------------------------------------------------- completions


def _completion_prompts(state: ServeState, prompt: Any) -> list[list[int]]:
    """Text, a list of texts, one list of token ids, or a list of them → token ids per prompt."""
    if isinstance(prompt, str):
        prompts = [state.encode(prompt)]
    elif prompt and all(isinstance(p, int) for p in prompt):
        prompts = [list(prompt)]
    else:
        prompts = [state.encode(p) if isinstance(p, str) else list(p) for p in prompt]
    if not prompts or any(not p for p in prompts):
        raise ApiError(400, "prompt must be non-empty text or token ids", "prompt")
    return prompts


async def _complete(
    state: ServeState, body: api.CompletionRequest, prompts: list[list[int]], params: SamplingParams
) -> Response:
    with state.admitted(len(prompts)):
        try:
            async with asyncio.timeout(state.cfg.timeout_s):
                samples = await state.run(prompts, params, api.stop_list(body.stop))
        except TimeoutError:
            raise ApiError(408, f"request timed out after {state.cfg.timeout_s:g} s", kind="timeout") from None
    choices = []
    for choice, sample in enumerate(samples):
        prompt = prompts[choice // params.n]
        text, logprobs = sample.text, None
        if body.echo:
            text = state.tokenizer.decode(prompt) + text
        if body.logprobs is not None:
            tokens, lps = sample.tokens, sample.logprobs
            if body.echo:
                tokens, lps = [*prompt, *tokens], [*(sample.prompt_logprobs or [None] * len(prompt)), *lps]
            logprobs = api.completion_logprobs(state.piece, tokens, lps)
        choices.append({"index": choice, "text": text, "logprobs": logprobs, "finish_reason": sample.finish})
    n_prompt = sum(map(len, prompts)) * params.n
    used = api.usage(n_prompt, sum(len(s.tokens) for s in samples))
    return JSONResponse(api.envelope(api.new_id("cmpl"), "text_completion", state.cfg.name, choices, usage=used))


async def _stream_completions(
    state: ServeState, body: api.CompletionRequest, prompts: list[list[int]], params: SamplingParams
) -> Response:
    rid = api.new_id("cmpl")

    def chunk(index: int, text: str, finish: str | None = None, logprobs: dict | None = None) -> str:
        choice = {"index": index, "text": text, "logprobs": logprobs, "finish_reason": finish}
        return _sse(api.envelope(rid, "text_completion", state.cfg.name, [choice]))

    async def events() -> AsyncIterator[str]:
        n_out = 0
        if body.echo:
            for choice in range(len(prompts) * params.n):
                yield chunk(choice, state.tokenizer.decode(prompts[choice // params.n]))
        async for choice, sample, delta in state.updates(prompts, params, api.stop_list(body.stop)):
            n_out += 1
            lps = None
            if body.logprobs is not None and sample.tokens and sample.logprobs[-1] is not None:
                lps = api.completion_logprobs(state.piece, sample.tokens[-1:], sample.logprobs[-1:])
            if delta or sample.finish:
                yield chunk(choice, delta, sample.finish, lps)
        if (body.stream_options or {}).get("include_usage"):
            used = api.usage(sum(map(len, prompts)) * params.n, n_out)
            yield _sse(api.envelope(rid, "text_completion", state.cfg.name, [], usage=used))

    return _streaming(state, len(prompts), events())


# ---------------------------------------------------------------------------------------------- chat


def _chat_prompt(state: ServeState, body: api.ChatCompletionRequest) -> list[int]:
    if body.tools:
        raise ApiError(400, "tool use is not enabled on this server (no tool is executed)", "tools")
    try:
        fmt = load_chat_format(state.tokenizer)
        return fmt.encode_prompt([{"role": m.role, "content": m.text()} for m in body.messages])
    except ValueError as e:
        raise ApiError(400, f"cannot format these messages: {e}", "messages") from None


async def _chat(
    state: ServeState, body: api.ChatCompletionRequest, prompt: list[int], params: SamplingParams
) -> Response:
    with state.admitted(1):
        try:
            async with asyncio.timeout(state.cfg.timeout_s):
                samples = await state.run([prompt], params, api.stop_list(body.stop))
        except TimeoutError:
            raise ApiError(408, f"request timed out after {state.cfg.timeout_s:g} s", kind="timeout") from None
    choices = [
        {
            "index": s.index,
            "message": {"role": "assistant", "content": s.text},
            "logprobs": api.chat_logprobs(state.piece, s.tokens, s.logprobs) if body.logprobs else None,
            "finish_reason": s.finish,
        }
        for s in samples
    ]
    used = api.usage(len(prompt) * params.n, sum(len(s.tokens) for s in samples))
    return JSONResponse(api.envelope(api.new_id("chatcmpl"), "chat.completion", state.cfg.name, choices, usage=used))


async def _stream_chat(
    state: ServeState, body: api.ChatCompletionRequest, prompt: list[int], params: SamplingParams
) -> Response:
    rid = api.new_id("chatcmpl")

    def chunk(index: int, delta: dict, finish: str | None = None, logprobs: dict | None = None) -> str:
        choice = {"index": index, "delta": delta, "logprobs": logprobs, "finish_reason": finish}
        return _sse(api.envelope(rid, "chat.completion.chunk", state.cfg.name, [choice]))

    async def events() -> AsyncIterator[str]:
        for j in range(params.n):
            yield chunk(j, {"role": "assistant", "content": ""})
        n_out = 0
        async for choice, sample, delta in state.updates([prompt], params, api.stop_list(body.stop)):
            n_out += 1
            lps = None
            if body.logprobs and sample.tokens and sample.logprobs[-1] is not None:
                lps = api.chat_logprobs(state.piece, sample.tokens[-1:], sample.logprobs[-1:])
            if delta or sample.finish:
                yield chunk(choice, {"content": delta} if delta else {}, sample.finish, lps)
        if (body.stream_options or {}).get("include_usage"):
            used = api.usage(len(prompt) * params.n, n_out)
            yield _sse(api.envelope(rid, "chat.completion.chunk", state.cfg.name, [], usage=used))

    return _streaming(state, 1, events())


# ---------------------------------------------------------------------------------------------- streaming


def _sse(obj: dict[str, Any]) -> str:
    return f"data: {json.dumps(obj)}\n\n"


def _streaming(state: ServeState, n_prompts: int, chunks: AsyncIterator[str]) -> StreamingResponse:
    """Admission (429) is decided before the 200 goes out; a timeout mid-stream ends it with an error event."""
    admission = state.admitted(n_prompts)
    admission.__enter__()

    async def body() -> AsyncIterator[str]:
        try:
            async with asyncio.timeout(state.cfg.timeout_s):
                async for c in chunks:
                    yield c
            yield "data: [DONE]\n\n"
        except TimeoutError:
            yield _sse(api.error_body(f"request timed out after {state.cfg.timeout_s:g} s", "timeout"))
        except ApiError as e:
            yield _sse(api.error_body(e.message, e.kind, e.param))
        finally:
            await chunks.aclose()  # aborts the engine work of a client that went away
            admission.__exit__(None, None, None)

    return StreamingResponse(body(), media_type="text/event-stream")


def serve(model: Transformer, tokenizer: TokenizerLike, cfg: ServeConfig) -> None:
    """Run the server until SIGINT/SIGTERM; in-flight requests finish before the engine stops."""
    import uvicorn

    app = build_app(ServeState(model, tokenizer, cfg))
    uvicorn.run(app, host=cfg.host, port=cfg.port, log_level="info")
