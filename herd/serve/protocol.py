"""The OpenAI request bodies `herd serve` accepts (validated by pydantic) and the JSON it answers with.

Fields the server does not use (user, presence_penalty, ...) are accepted and ignored, as OpenAI-compatible
servers do, so that existing clients work unchanged; fields with values it cannot honour are 400s.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from herd.model.engine import TokenLogprob


class _Body(BaseModel):
    model_config = ConfigDict(extra="ignore")


class CompletionRequest(_Body):
    model: str
    prompt: str | list[str] | list[int] | list[list[int]]
    max_tokens: int | None = Field(16, ge=0)
    temperature: float = Field(1.0, ge=0.0, le=2.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    n: int = Field(1, ge=1, le=128)
    stream: bool = False
    stream_options: dict[str, Any] | None = None
    logprobs: int | None = Field(None, ge=0, le=20)
    echo: bool = False
    stop: str | list[str] | None = None
    seed: int | None = None


class TextPart(_Body):
    type: Literal["text"]
    text: str


class ChatMessage(_Body):
    role: Literal["system", "user", "assistant", "tool", "ipython"]
    content: str | list[TextPart] | None = None

    def text(self) -> str:
        if isinstance(self.content, list):
            return "".join(p.text for p in self.content)
        return self.content or ""


class ChatCompletionRequest(_Body):
    model: str
    messages: list[ChatMessage] = Field(min_length=1)
    max_tokens: int | None = Field(None, ge=0)
    max_completion_tokens: int | None = Field(None, ge=0)
    temperature: float = Field(1.0, ge=0.0, le=2.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    n: int = Field(1, ge=1, le=128)
    stream: bool = False
    stream_options: dict[str, Any] | None = None
    logprobs: bool = False
    top_logprobs: int | None = Field(None, ge=0, le=20)
    stop: str | list[str] | None = None
    seed: int | None = None
    tools: list[dict[str, Any]] | None = None


class TokenizeRequest(_Body):
    prompt: str
    add_special_tokens: bool = True


class DetokenizeRequest(_Body):
    tokens: list[int]


def stop_list(stop: str | list[str] | None) -> list[str]:
    return [stop] if isinstance(stop, str) else list(stop or [])


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex}"


def error_body(message: str, kind: str = "invalid_request_error", param: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "param": param, "code": None}}


@dataclass
class Sample:
    """One finished choice: its tokens, text and (when asked for) log-probabilities."""

    index: int
    text: str = ""
    tokens: list[int] = field(default_factory=list)
    logprobs: list[TokenLogprob | None] = field(default_factory=list)
    prompt_logprobs: list[TokenLogprob | None] | None = None
    finish: str | None = None


def completion_logprobs(
    piece: Callable[[int], str], tokens: Sequence[int], lps: Sequence[TokenLogprob | None], offset: int = 0
) -> dict[str, Any]:
    """The legacy completions `logprobs` object (what lm-eval's local-completions reads)."""
    strings = [piece(t) for t in tokens]
    offsets = []
    for s in strings:
        offsets.append(offset)
        offset += len(s)
    return {
        "tokens": strings,
        "token_logprobs": [lp.logprob if lp else None for lp in lps],
        "top_logprobs": [{piece(i): v for i, v in lp.top} if lp else None for lp in lps],
        "text_offset": offsets,
    }


def chat_logprobs(piece: Callable[[int], str], tokens: Sequence[int], lps: Sequence[TokenLogprob | None]) -> dict:
    def entry(token: int, logprob: float) -> dict[str, Any]:
        s = piece(token)
        return {"token": s, "logprob": logprob, "bytes": list(s.encode("utf-8"))}

    content = []
    for t, lp in zip(tokens, lps):
        if lp is not None:
            content.append({**entry(t, lp.logprob), "top_logprobs": [entry(i, v) for i, v in lp.top]})
    return {"content": content}


def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def envelope(rid: str, obj: str, model: str, choices: list[dict], **extra: Any) -> dict[str, Any]:
    return {"id": rid, "object": obj, "created": int(time.time()), "model": model, "choices": choices, **extra}
