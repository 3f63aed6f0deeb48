"""`herd chat MODEL`: an interactive chat in the model's own chat format (Llama 3.1 layout or its template)."""

from __future__ import annotations

import argparse
import sys

from herd.cli.common import Streamer, add_model_args, load_model_and_tokenizer


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("chat", help="chat with a model (type /exit or Ctrl-D to leave, /reset to forget)")
    add_model_args(p)
    p.add_argument("--system", default=None, help="system prompt")
    p.add_argument("--message", action="append", help="send these user messages and exit (non-interactive)")
    p.set_defaults(func=chat_command)


def chat_command(args: argparse.Namespace) -> int:
    from herd.tokenizer import load_chat_format

    model, tok = load_model_and_tokenizer(args)
    session = ChatSession(model, tok, load_chat_format(tok), args)
    if args.message:
        for text in args.message:
            print(f"user> {text}")
            session.reply(text)
        return 0
    while True:
        try:
            text = input("user> ").strip()
        except EOFError:
            print()
            return 0
        if text == "/exit":
            return 0
        if text == "/reset":
            session.reset()
            continue
        if text:
            session.reply(text)


class ChatSession:
    def __init__(self, model, tok, fmt, args: argparse.Namespace) -> None:
        self.model, self.tok, self.fmt, self.args = model, tok, fmt, args
        self.reset()

    def reset(self) -> None:
        self.messages = [{"role": "system", "content": self.args.system}] if self.args.system else []

    def reply(self, text: str) -> dict:
        from herd.model import generate

        self.messages.append({"role": "user", "content": text})
        prompt = self.fmt.encode_prompt(self.messages)
        print("assistant> ", end="", flush=True)
        out = generate(
            self.model,
            [prompt],
            max_new_tokens=self.args.max_new_tokens,
            temperature=self.args.temperature,
            top_p=self.args.top_p,
            stop_ids=sorted(self.tok.stop_ids),
            seed=self.args.seed,
            on_token=Streamer(self.tok),
        )[0]
        print(flush=True)
        # Parse what was generated (tool calls included) back into a message for the history.
        message = self.fmt.decode_message([*out, min(self.tok.stop_ids)])
        self.messages.append(message)
        sys.stdout.flush()
        return message
