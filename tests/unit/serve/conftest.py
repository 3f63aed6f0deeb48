"""Fixtures for herd.serve: a tiny random model and a running server (skipped without the serve extra)."""

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

from unit.serve.tiny import byte_tokenizer, running_server, tiny_model


@pytest.fixture(scope="module")
def tiny():
    return tiny_model(), byte_tokenizer()


@pytest.fixture(scope="module")
def server(tiny):
    with running_server(*tiny) as s:
        yield s
