"""A tiny random model behind a real `herd serve` app on a loopback port (uvicorn in a thread)."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator

from helpers import tiny_config


def byte_tokenizer():
    """A Llama 3 tokenizer with only the 256 byte tokens (+ the 256 Llama 3 specials: ids 256..511)."""
    from herd.tokenizer.bpe import Tokenizer

    return Tokenizer({bytes([i]): i for i in range(256)}, name="bytes")


def tiny_model(seed: int = 0):
    from herd.model import build_model

    return build_model(tiny_config(vocab_size=512), seed=seed).eval()


@contextlib.contextmanager
def running_server(model, tokenizer, **cfg) -> Iterator[tuple[str, object, object]]:
    """(base url, ServeState, uvicorn.Server) for an app serving `model` as "tiny"."""
    import uvicorn

    from herd.serve.app import ServeConfig, ServeState, build_app

    state = ServeState(model, tokenizer, ServeConfig(name="tiny", **cfg))
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(build_app(state), log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}", state, server
    finally:
        server.should_exit = True
        thread.join(30)
        sock.close()
