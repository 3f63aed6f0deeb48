import pytest
from helpers import write_corpus

from herd.data.tokenize import TokenizeConfig, tokenize


@pytest.fixture(scope="session")
def token_dir(tmp_path_factory):
    """Token shards of a small stdlib corpus with a 1,024-id herd-trained tokenizer (~5 s, once)."""
    from herd.tokenizer.corpus import iter_documents
    from herd.tokenizer.ranks import save_ranks
    from herd.tokenizer.train import train_bpe

    root = tmp_path_factory.mktemp("corpus")
    sources = write_corpus(root / "docs")
    texts = [d.text for d in iter_documents([p for ps in sources.values() for p in ps])]
    save_ranks(train_bpe(texts, vocab_size=1024), root / "tok.model")
    cfg = TokenizeConfig(tokenizer=str(root / "tok.model"), sources=sources, out=str(root / "tokens"), val_fraction=0.1)
    tokenize(cfg)
    return root / "tokens"
