"""herd.tokenizer: Llama 3's tiktoken BPE (Meta's file or trained here), HF/GGUF vocabularies, chat formats.

tok = load_tokenizer("llama3")                 # Meta's tokenizer.model from llama-models, offline
ids = tok.encode("The Llama 3 Herd of Models", bos=True)
chat = load_chat_format(tok)                   # Llama 3.1 layout (a GGUF/HF tokenizer: its jinja template)
dialog = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]
tokens, loss_mask = chat.encode_dialog(dialog)       # loss_mask: 1 on "hello<|eot_id|>" only
"""

from herd.tokenizer.bpe import (
    LLAMA3_PAT_STR,
    MAX_ENCODE_CHARS,
    MAX_RUN_CHARS,
    NUM_SPECIAL,
    Tokenizer,
    guard_pieces,
    llama3_special_tokens,
    ranks_to_hf,
)
from herd.tokenizer.chat import (
    ChatFormatLike,
    Llama3ChatFormat,
    Message,
    TemplateChatFormat,
    ToolCall,
    load_chat_format,
)
from herd.tokenizer.hf import HFTokenizer, read_gguf_metadata
from herd.tokenizer.load import llama3_path, load_tokenizer, smollm2_gguf_path, tokenizer_file
from herd.tokenizer.protocol import TokenizerLike
from herd.tokenizer.ranks import load_ranks, save_ranks
from herd.tokenizer.stats import CompressionRow, Document, compression_stats
from herd.tokenizer.train import extend_ranks, train_bpe, train_tokenizer

__all__ = [
    "LLAMA3_PAT_STR",
    "MAX_ENCODE_CHARS",
    "MAX_RUN_CHARS",
    "NUM_SPECIAL",
    "ChatFormatLike",
    "CompressionRow",
    "Document",
    "HFTokenizer",
    "Llama3ChatFormat",
    "Message",
    "TemplateChatFormat",
    "Tokenizer",
    "TokenizerLike",
    "ToolCall",
    "compression_stats",
    "extend_ranks",
    "guard_pieces",
    "llama3_path",
    "llama3_special_tokens",
    "load_chat_format",
    "load_ranks",
    "load_tokenizer",
    "ranks_to_hf",
    "read_gguf_metadata",
    "save_ranks",
    "smollm2_gguf_path",
    "tokenizer_file",
    "train_bpe",
    "train_tokenizer",
]
