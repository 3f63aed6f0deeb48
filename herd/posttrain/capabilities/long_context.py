"""Synthetic long-context SFT data and needle evals [P §4.3.4].

Three kinds of samples, as the paper makes them, at lengths a given model can hold:
- question answering: a long context (consecutive bundled documents), a question about one of its
  `chunk_tokens`-token chunks (the paper splits into 8K chunks), the answer being a span of that chunk
  (the extractive probes of `factuality`); dropped when the span did not survive into the context;
- hierarchical summaries: the policy summarises every chunk, then the chunk summaries; the final summary
  becomes the target for the whole context; dropped when empty or when too few of its content words occur
  in the context ("summary_unsupported": a summary that invents);
- code repository: file heads of a Python package (the stdlib `email` by default); the question asks which
  of the shown files import a module that at least `min_importers` files import (the paper: 5), and the
  answer is computed with `ast` from the shown text.
Each sample is bucketed by its token length (the paper: 16K, 32K, 64K, 128K); a sample over the largest
bucket is dropped ("too_long"). Kept samples are capped at `share` of the SFT mix (the paper found 0.1%
best): the rest are dropped ("over_mix_share"), and the realised share is reported.

Evaluation (greedy, at `eval_lengths`): single-needle pass rate over depths (`herd.eval.needle`, the
value), multi-needle recall (several keys planted at once, all asked for), and QA accuracy on contexts
built from held-out documents.
"""

from __future__ import annotations

import ast
import importlib.util
import random
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from herd.eval.needle import needle_probe
from herd.eval.stats import ci95
from herd.posttrain.capabilities.base import (
    Capability,
    CapabilityContext,
    Outputs,
    ReplyFn,
    policy_replies,
    register,
)
from herd.posttrain.capabilities.factuality import judge, make_probe, read_documents, sentences
from herd.posttrain.data import split_held_out
from herd.posttrain.mix import TABLE7_SHARES

Messages = list[dict[str, str]]
_WORD = re.compile(r"[A-Za-z]{4,}")
_CODE_INTRO = "Here are the first lines of files from a Python package.\n\n"


@dataclass
class LongContextConfig:
    documents: list[str] = field(default_factory=lambda: ["runs/corpus/sotu"])
    code_package: str = "email"  # an importable package whose modules make the repository tasks
    held_out_fraction: float = 0.3
    chunk_tokens: int = 8192  # [P §4.3.4]
    buckets: list[int] = field(default_factory=lambda: [16384, 32768, 65536, 131072])  # [P §4.3.4]
    n_qa: int = 8
    n_summaries: int = 2
    n_code: int = 4
    min_importers: int = 5  # code tasks ask about files imported by at least this many others [P §4.3.4]
    head_lines: int = 40  # lines shown of each file in a code task
    min_summary_support: float = 0.6  # share of a summary's content words found in the context
    share: float = 0.001  # of the SFT mix [P §4.3.4]; 0 keeps every sample
    mix_dialogs: int = 0  # dialogs the long-context data is mixed into; 0 = the bundle's sft.jsonl
    max_new_tokens: int = 64
    eval_lengths: list[int] = field(default_factory=lambda: [512, 1024, 2048])
    eval_depths: list[float] = field(default_factory=lambda: [0.0, 0.25, 0.5, 0.75, 1.0])
    n_needles: int = 4
    n_eval_qa: int = 10


# ---------------------------------------------------------------- building blocks


def chunk(ids: Sequence[int], size: int) -> list[list[int]]:
    return [list(ids[i : i + size]) for i in range(0, len(ids), size)]


def bucket_of(length: int, buckets: Sequence[int]) -> int | None:
    """The smallest bucket that holds `length` tokens; None when none does."""
    return next((b for b in sorted(buckets) if length <= b), None)


def module_imports(source: str, module: str, package_modules: set[str]) -> list[tuple[str, int]]:
    """(imported package module, line) for each import in `source` (a file of `module`), relative ones resolved."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return []
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = module.split(".")[: -node.level]  # a module's package is its name minus one part
                base = ".".join([*parts, base] if base else parts)
            names = [f"{base}.{a.name}" if f"{base}.{a.name}" in package_modules else base for a in node.names]
        else:
            continue
        out += [(n, node.lineno) for n in names if n in package_modules and n != module]
    return out


def package_files(package: str) -> dict[str, tuple[str, str]]:
    """module name -> (path inside the package's parent, source) of every .py file of an installed package."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ValueError(f"capability.long_context.code_package: {package!r} is not an importable package")
    root = Path(spec.submodule_search_locations[0])
    out = {}
    for f in sorted(root.rglob("*.py")):
        rel = f.relative_to(root).with_suffix("").parts
        name = ".".join([package, *rel]).removesuffix(".__init__")
        out[name] = (str(Path(package, *rel)) + ".py", f.read_text(encoding="utf-8", errors="replace"))
    return out


def multi_needle_probe(
    model: Any, tokenizer: Any, haystack: Sequence[int], length: int, n_needles: int, seed: int = 0,
    generate_fn: Callable[..., list[list[int]]] | None = None,
) -> float:  # fmt: skip
    """Recall of `n_needles` pass keys planted at evenly spaced depths of a `length`-token context."""
    if generate_fn is None:
        from herd.model import generate as generate_fn
    rng = random.Random(seed)
    keys = [str(rng.randrange(10_000, 100_000)) for _ in range(n_needles)]
    needles = [tokenizer.encode(f" Pass key number {i + 1} is {k}. Remember it. ") for i, k in enumerate(keys)]
    question = tokenizer.encode(f" What are the {n_needles} pass keys? The pass keys are")
    room = length - sum(map(len, needles)) - len(question) - 1
    if room <= 0 or len(haystack) < room:
        raise ValueError(f"multi-needle probe: length {length} leaves {room} tokens for {len(haystack)} of haystack")
    filler = list(haystack[:room])
    prompt = [tokenizer.bos_id] if tokenizer.bos_id is not None else []
    cuts = [int(room * (i + 0.5) / n_needles) for i in range(n_needles)]
    prev = 0
    for cut, needle in zip(cuts, needles, strict=True):
        prompt += filler[prev:cut] + needle
        prev = cut
    prompt += filler[prev:] + question
    out = generate_fn(model, [prompt], max_new_tokens=8 * n_needles)[0]
    text = tokenizer.decode(out)
    return sum(k in text for k in keys) / n_needles


@register
class LongContext(Capability):
    name = "long_context"
    category = "long_context"
    Config = LongContextConfig
    reply_fn: ReplyFn | None = None  # tests plant a scripted generator; None samples the model

    # ------------------------------------------------------------ data

    def generate(self, ctx: CapabilityContext) -> Outputs:
        cfg = self.config
        out = Outputs()
        rng = random.Random(ctx.seed)
        docs = split_held_out(read_documents(cfg.documents), cfg.held_out_fraction, ctx.seed)[0]
        samples = []
        for i in range(cfg.n_qa):
            samples.append(self._qa(ctx.chat, docs, cfg.buckets[i % len(cfg.buckets)], rng, out))
        samples += self._summaries(ctx, docs, rng, out)
        samples += self._code(ctx.chat, rng, out)
        self._bucket_and_mix(ctx, [s for s in samples if s is not None], out)
        return out

    def _context(self, tok: Any, docs: Sequence[tuple[str, str]], budget: int, rng: random.Random) -> list[int]:
        """Consecutive documents from a random start, cut to `budget` tokens."""
        start = rng.randrange(len(docs))
        ids: list[int] = []
        for _, text in [*docs[start:], *docs[:start]]:
            ids += tok.encode(text + "\n\n")
            if len(ids) >= budget:
                break
        return ids[:budget]

    def _qa(
        self, chat: Any, docs: Sequence[tuple[str, str]], target: int, rng: random.Random, out: Outputs
    ) -> dict | None:
        """A question about a span of one chunk, asked after the whole context; the dialog fits `target`."""
        tok = chat.tokenizer
        ids = self._context(tok, docs, target, rng)
        row = {"source": "long_context-qa", "target_tokens": target}
        chunks = chunk(ids, self.config.chunk_tokens)
        rng.shuffle(chunks)
        cut = None
        for piece in chunks:
            candidates = sentences(tok.decode(piece))[1:-1]  # the first and last may be cut mid-sentence
            rng.shuffle(candidates)
            for probe in (p for p, _ in (make_probe(s, "long_context") for s in candidates) if p is not None):
                question = probe.question.replace("Fill in the blank", "In the document above, fill in the blank")
                dialog = _qa_dialog(tok, question, probe.answer)
                fitted = _fit(chat, dialog, ids, target)
                if probe.sentence in " ".join(tok.decode(fitted).split()):
                    return {**row, "messages": dialog(fitted)}
                cut = probe.answer  # its sentence was cut to make room for the question: try another
        if cut is not None:
            out.drop({**row, "answer": cut}, "answer_not_in_context")
        else:
            out.drop(row, "no_question_in_chunk")
        return None

    def _summaries(
        self, ctx: CapabilityContext, docs: Sequence[tuple[str, str]], rng: random.Random, out: Outputs
    ) -> list:
        """Chunk summaries first, then a summary of those: the paper's hierarchical summarisation [P §4.3.4]."""
        cfg, tok = self.config, ctx.chat.tokenizer
        contexts = [self._context(tok, docs, cfg.buckets[i % len(cfg.buckets)], rng) for i in range(cfg.n_summaries)]
        pieces = [[tok.decode(c) for c in chunk(ids, cfg.chunk_tokens)] for ids in contexts]
        ask = "Summarize the following text in two or three sentences.\n\n"
        flat = [[{"role": "user", "content": ask + p}] for ps in pieces for p in ps]
        partial = iter(r[0] for r in self._greedy(ctx, flat))
        per_context = [[next(partial) for _ in ps] for ps in pieces]
        top = [[{"role": "user", "content": "Combine these partial summaries into one summary of two or three "
                 "sentences.\n\n" + "\n".join(f"- {s.strip()}" for s in parts)}] for parts in per_context]  # fmt: skip
        finals = [r[0].strip() for r in self._greedy(ctx, top)]
        kept = []
        for i, (ids, parts, final) in enumerate(zip(contexts, per_context, finals, strict=True)):

            def dialog(ids: Sequence[int], final: str = final) -> Messages:
                user = f"Summarize this document.\n\n<document>\n{tok.decode(ids)}\n</document>"
                return [{"role": "user", "content": user}, {"role": "assistant", "content": final}]

            context = tok.decode(ids)  # the summary is judged against all the chunks it summarised
            row = {"source": "long_context-summary", "chunk_summaries": parts}
            support = _support(final, context)
            if not final:
                out.drop({**row, "summary": final}, "empty_summary")
            elif support < cfg.min_summary_support:
                out.drop({**row, "summary": final}, "summary_unsupported", support=round(support, 3))
            else:
                kept.append({**row, "messages": dialog(_fit(ctx.chat, dialog, ids, cfg.buckets[i % len(cfg.buckets)]))})
        return kept

    def _code(self, chat: Any, rng: random.Random, out: Outputs) -> list:
        cfg, tok = self.config, chat.tokenizer
        files = package_files(cfg.code_package)
        imports = {m: module_imports(src, m, set(files)) for m, (_, src) in files.items()}
        importers: dict[str, set[str]] = {}
        for m, found in imports.items():
            for target, _ in found:
                importers.setdefault(target, set()).add(m)
        targets = sorted(t for t, who in importers.items() if len(who) >= cfg.min_importers)
        kept = []
        for i in range(cfg.n_code):
            row = {"source": "long_context-code", "package": cfg.code_package}
            if not targets:
                out.drop(row, "too_few_importers", min_importers=cfg.min_importers)
                continue
            target = rng.choice(targets)
            question = f"\nWhich of these files import the module `{target}`? List their paths."
            everyone = "\n".join(f"- {files[m][0]}" for m in importers[target])
            frame = [{"role": "user", "content": _CODE_INTRO + question}, {"role": "assistant", "content": everyone}]
            budget = cfg.buckets[i % len(cfg.buckets)] - len(chat.encode_dialog(frame)[0])
            shown, parts, used = [], [], 0
            for m in rng.sample(sorted(files), len(files)):
                head = "\n".join(files[m][1].splitlines()[: cfg.head_lines])
                part = f"### {files[m][0]}\n{head}\n"
                n = len(tok.encode(part))
                if used + n > budget:
                    continue
                shown.append(m)
                parts.append(part)
                used += n
            answer = sorted(m for m in shown if any(t == target and line <= cfg.head_lines for t, line in imports[m]))
            if not answer:
                out.drop({**row, "target": target}, "no_importer_shown")
                continue
            user = _CODE_INTRO + "\n".join(parts) + question
            reply = "\n".join(f"- {files[m][0]}" for m in answer)
            kept.append({**row, "target": target, "messages": [{"role": "user", "content": user},
                                                                {"role": "assistant", "content": reply}]})  # fmt: skip
        return kept

    def _bucket_and_mix(self, ctx: CapabilityContext, samples: list[dict], out: Outputs) -> None:
        cfg = self.config
        mix = cfg.mix_dialogs or _count_lines(ctx.bundle / "sft.jsonl")
        quota = max(1, round(cfg.share * mix / (1 - cfg.share))) if cfg.share > 0 else len(samples)
        random.Random(ctx.seed).shuffle(samples)  # the quota keeps a mix of kinds, not the first kind
        buckets: dict[int, int] = {}
        for s in samples:
            length = len(ctx.chat.encode_dialog(s["messages"])[0])
            b = bucket_of(length, cfg.buckets)
            s = {**s, "tokens": length, "bucket": b}
            if b is None:
                out.drop(s, "too_long", max_bucket=max(cfg.buckets))
            elif len(out.kept) >= quota:
                out.drop(s, "over_mix_share", quota=quota)
            else:
                out.kept.append(s)
                buckets[b] = buckets.get(b, 0) + 1
        out.stats.update(
            buckets=dict(sorted(buckets.items())),
            mix_dialogs=mix,
            target_share=cfg.share,
            realised_share=len(out.kept) / (mix + len(out.kept)) if mix + len(out.kept) else 0.0,
            table7_share=TABLE7_SHARES["long_context"] / 100,
        )

    def _greedy(
        self, ctx: CapabilityContext, prompts: Sequence[Messages], model_dir: Path | None = None
    ) -> list[list[str]]:
        """One greedy reply per prompt, one prompt at a time (long prompts: batching would pad them all)."""
        model = model_dir or ctx.policy
        return policy_replies(self.reply_fn, model, ctx.chat, prompts, 1, self.config.max_new_tokens, batch=1)

    # ------------------------------------------------------------ evaluation

    def evaluate(self, model_dir: Path, ctx: CapabilityContext) -> dict[str, Any]:
        """Needle pass rate over lengths × depths (the value), multi-needle recall, held-out long QA accuracy."""
        from herd.eval.needle import haystack_tokens
        from herd.model import load_model

        cfg, tok = self.config, ctx.chat.tokenizer
        held = split_held_out(read_documents(cfg.documents), cfg.held_out_fraction, ctx.seed)[1]
        specials = {t for t in (tok.bos_id, getattr(tok, "eos_id", None)) if t is not None}
        hay = haystack_tokens([tok.encode(text) for _, text in held], max(cfg.eval_lengths), specials)
        model = load_model(model_dir).eval()
        found, recall = [], []
        for i, length in enumerate(cfg.eval_lengths):
            found += needle_probe(model, tok, hay, length, cfg.eval_depths, seed=ctx.seed + i).found
            recall.append(multi_needle_probe(model, tok, hay, length, cfg.n_needles, seed=ctx.seed + i))
        qa_right = self._eval_qa(model_dir, ctx, held)
        rate = sum(found) / len(found)
        multi = sum(recall) / len(recall)
        qa = sum(qa_right) / len(qa_right) if qa_right else 0.0
        return {
            "metric": "needle_pass_rate",
            "value": rate,
            "ci95": ci95(rate, len(found)),
            "n": len(found),
            "lengths": cfg.eval_lengths,
            "multi_needle_recall": multi,
            "multi_needle_ci95": ci95(multi, len(recall) * cfg.n_needles),
            "multi_needle_n": len(recall) * cfg.n_needles,
            "qa_accuracy": qa,
            "qa_ci95": ci95(qa, len(qa_right)),
            "qa_n": len(qa_right),
        }

    def _eval_qa(self, model_dir: Path, ctx: CapabilityContext, held: Sequence[tuple[str, str]]) -> list[bool]:
        """Held-out long-document QA at the eval lengths (the task the QA samples train)."""
        cfg = self.config
        rng = random.Random(ctx.seed + 7)
        out = Outputs()
        rows = [self._qa(ctx.chat, held, cfg.eval_lengths[i % len(cfg.eval_lengths)], rng, out)
                for i in range(cfg.n_eval_qa)]  # fmt: skip
        rows = [r for r in rows if r is not None]
        replies = self._greedy(ctx, [r["messages"][:1] for r in rows], model_dir)
        return [_right(r, rep[0]) for r, rep in zip(rows, replies, strict=True)]


def _right(row: dict, reply: str) -> bool:
    from herd.posttrain.capabilities.factuality import Probe

    answer = row["messages"][-1]["content"]
    kind = "number" if re.fullmatch(r"[\d,.]+", answer) else "name"
    return judge(reply, Probe("", answer, kind, "", "")) == "correct"


def _support(summary: str, context: str) -> float:
    """Share of the summary's content words (4+ letters) that occur in the context."""
    words = [w.lower() for w in _WORD.findall(summary)]
    have = {w.lower() for w in _WORD.findall(context)}
    return sum(w in have for w in words) / len(words) if words else 0.0


def _qa_dialog(tok: Any, question: str, answer: str) -> Callable[[Sequence[int]], Messages]:
    def dialog(ids: Sequence[int]) -> Messages:
        user = f"Read the document and answer the question.\n\n<document>\n{tok.decode(ids)}\n</document>\n\n"
        return [{"role": "user", "content": user + question}, {"role": "assistant", "content": answer}]

    return dialog


def _fit(chat: Any, dialog: Callable[[Sequence[int]], Messages], ids: Sequence[int], target: int) -> list[int]:
    """The context's ids cut from the end until the whole dialog (template, question, answer) is at most
    `target` tokens; when even an empty context is too long the sample stays over and is bucketed out."""
    ids = list(ids)
    for _ in range(4):  # cutting ids can change how the text re-tokenizes: a few rounds settle it
        over = len(chat.encode_dialog(dialog(ids))[0]) - target
        if over <= 0 or not ids:
            break
        ids = ids[: max(0, len(ids) - over - 4)]
    return ids


def _count_lines(path: Path) -> int:
    return sum(1 for line in path.read_text(encoding="utf-8").splitlines() if line.strip()) if path.is_file() else 0
