"""`herd chat MODEL`: an interactive chat in the model's own chat format (Llama 3.1 layout or its template).

`--guard GUARD` screens every user message and every reply (herd.safety.guarded): GUARD is `minilm`
(herd's MiniLM guard trained on the bundled safety set), a saved guard folder, or a Llama Guard 3
checkpoint. Code in replies also goes through Code Shield (bandit) unless `--no-code-shield`. A blocked
exchange prints one fixed refusal, and the refusal, not the blocked reply, enters the history.
"""

from __future__ import annotations

import argparse
import sys

from herd.cli.common import Streamer, add_model_args, load_model_and_tokenizer


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("chat", help="chat with a model (type /exit or Ctrl-D to leave, /reset to forget)")
    add_model_args(p)
    p.add_argument("--system", default=None, help="system prompt")
    p.add_argument("--message", action="append", help="send these user messages and exit (non-interactive)")
    p.add_argument("--guard", default=None, help="screen input and output: minilm, a guard folder or checkpoint")
    p.add_argument("--no-code-shield", action="store_true", help="with --guard: do not scan code in replies")
    p.set_defaults(func=chat_command)


def chat_command(args: argparse.Namespace) -> int:
    from herd.tokenizer import load_chat_format

    model, tok = load_model_and_tokenizer(args)
    guard = None
    if getattr(args, "guard", None):
        from herd.safety.guarded import load_guard

        guard = load_guard(args.guard)
    session = ChatSession(model, tok, load_chat_format(tok), args, guard=guard)
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
    def __init__(self, model, tok, fmt, args: argparse.Namespace, guard=None) -> None:
        self.model, self.tok, self.fmt, self.args, self.guard = model, tok, fmt, args, guard
        self.reset()

    def reset(self) -> None:
        self.messages = [{"role": "system", "content": self.args.system}] if self.args.system else []

    def reply(self, text: str) -> dict:
        self.messages.append({"role": "user", "content": text})
        if self.guard is None:
            print("assistant> ", end="", flush=True)
            message = self.generate(self.messages, Streamer(self.tok))
            print(flush=True)
        else:
            message = self._guarded()
        self.messages.append(message)
        sys.stdout.flush()
        return message

    def _guarded(self) -> dict:
        # No streaming: a reply is shown only after the output guard has read all of it.
        from herd.safety.guarded import guarded_reply

        shield = not getattr(self.args, "no_code_shield", False)
        out = guarded_reply(self.messages, self.generate, self.guard, self.guard, code_shield=shield)
        print(f"assistant> {out.message['content']}", flush=True)
        if out.blocked:
            print(f"[guard: blocked {out.blocked}]", file=sys.stderr, flush=True)
        return out.message

    def generate(self, messages: list[dict], on_token=None) -> dict:
        """The model's reply to `messages`, parsed (tool calls included) back into a message."""
        from herd.model import generate

        prompt = self.fmt.encode_prompt(messages)
        out = generate(
            self.model,
            [prompt],
            max_new_tokens=self.args.max_new_tokens,
            temperature=self.args.temperature,
            top_p=self.args.top_p,
            stop_ids=sorted(self.tok.stop_ids),
            seed=self.args.seed,
            on_token=on_token,
        )[0]
        return self.fmt.decode_message([*out, min(self.tok.stop_ids)])
