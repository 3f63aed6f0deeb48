from __future__ import annotations

import pytest

from herd.tokenizer import Tokenizer, load_tokenizer, train_bpe


@pytest.fixture(scope="session")
def llama3() -> Tokenizer:
    return load_tokenizer("llama3")


@pytest.fixture(scope="session")
def reference():
    """Meta's reference tokenizer from llama-models: the golden source of ids."""
    from llama_models.llama3.tokenizer import Tokenizer as MetaTokenizer

    from herd.tokenizer import llama3_path

    return MetaTokenizer(llama3_path())


@pytest.fixture(scope="session")
def english_texts() -> list[str]:
    from unit.tokenizer.tok_texts import english_corpus

    return english_corpus(300_000)


@pytest.fixture(scope="session")
def trained(english_texts) -> Tokenizer:
    """A small herd-trained tokenizer (4,096 ids) on ~300 KB of stdlib source."""
    from unit.tokenizer.tok_texts import MULTILINGUAL

    return Tokenizer(train_bpe([*english_texts, *MULTILINGUAL.values()], vocab_size=4096), name="trained")


@pytest.fixture(scope="session")
def smollm2(smollm2_gguf):
    return load_tokenizer(smollm2_gguf)


@pytest.fixture(scope="session")
def hf_reference(smollm2_gguf):
    """transformers' tokenizer for the same GGUF: the reference for herd's GGUF reader and templates."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(smollm2_gguf.parent, gguf_file=smollm2_gguf.name)
