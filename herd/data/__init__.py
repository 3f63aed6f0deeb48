"""herd.data: the Llama 3 pretraining-data pipeline [P §3.1] on datatrove (see docs/curation.md).

    from herd.data.documents import iter_documents
    for doc in iter_documents("runs/curate/sample/07_mix"):  # id, text, source, language, url, metadata
        ...

Heavy dependencies (datatrove, fasttext, lxml, sentence-transformers) are imported by the modules that
need them, so importing this package stays cheap.
"""

from herd.data.documents import iter_documents

__all__ = ["iter_documents"]
