"""Multilingual post-training data and its evaluation [P §4.3.2].

Data, as the paper builds it at toy scale:
- human dialogs: chatterbot-corpus conversations in the chosen languages (the paper's 2.4% human share);
  a dialog whose assistant turns lid.176 confidently puts in another language is dropped;
- rejection-sampled replies: the policy answers held-in first turns; a reply is kept only when its language
  (fastText lid.176 [P §3.1.1]) is the prompt's ("language_mismatch" otherwise) [P §4.3.2];
- preference pairs whose label is checkable: a reply in the prompt's language over one in another language
  (the corpus reply vs another language's reply, and matching vs mismatching policy samples).

Evaluation on conversations held out from all of the above: the language-match rate of greedy replies,
and MGSM-style arithmetic word problems (templates in six languages, the last number checked).
"""

from __future__ import annotations

import importlib.util
import random
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from herd.data.langid import identify
from herd.eval.stats import ci95
from herd.posttrain.capabilities.base import Capability, CapabilityContext, Outputs, ReplyFn, policy_replies, register
from herd.posttrain.data import Preference, preference_row, split_held_out

# chatterbot-corpus folder -> lid.176 label. Hinglish (romanised Hindi) has no lid.176 label: left out.
CHATTERBOT_LANGS = {
    "bengali": "bn", "chinese": "zh", "dutch": "nl", "english": "en", "french": "fr", "german": "de",
    "hebrew": "he", "hindi": "hi", "indonesian": "id", "italian": "it", "japanese": "ja", "korean": "ko",
    "marathi": "mr", "oriya": "or", "persian": "fa", "portuguese": "pt", "russian": "ru", "spanish": "es",
    "swedish": "sv", "tamil": "ta", "telugu": "te", "thai": "th", "traditionalchinese": "zh", "turkish": "tr",
    "ukrainian": "uk", "urdu": "ur", "yoruba": "yo",
}  # fmt: skip
# Llama 3.1's languages besides English [P §4.3.2]; chatterbot-corpus 1.3.3 has all seven.
LLAMA31_LANGS = ("de", "fr", "it", "pt", "hi", "es", "th")

Messages = list[dict[str, str]]


@dataclass
class MultilingualConfig:
    languages: list[str] = field(default_factory=lambda: list(LLAMA31_LANGS))  # lid.176 codes
    held_out_fraction: float = 0.25  # conversations per language kept for evaluation only
    max_dialogs_per_language: int = 200  # human dialogs per language into SFT (0 = all)
    policy_prompts_per_language: int = 8  # held-in first turns the policy answers (rejection sampling)
    k: int = 4  # samples per prompt
    temperature: float = 0.6  # the paper's final-round multilingual RS temperature [P §4.3.2]
    max_new_tokens: int = 48
    min_lid_score: float = 0.5  # below this lid.176 is not sure: a human dialog is kept, a sample dropped
    eval_prompts_per_language: int = 10
    mgsm_per_language: int = 8
    mgsm_languages: list[str] = field(default_factory=lambda: ["en", "de", "fr", "es", "it", "pt"])
    eval_max_new_tokens: int = 64


def chatterbot_root() -> Path:
    """`chatterbot_corpus/data` of the installed package, found without importing it."""
    spec = importlib.util.find_spec("chatterbot_corpus")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("multilingual dialogs need chatterbot-corpus: pip install --no-deps chatterbot-corpus")
    return Path(spec.submodule_search_locations[0]) / "data"


def read_conversations(root: Path, lang: str) -> list[list[str]]:
    """Conversations (lists of turns, ≥ 2) of every chatterbot folder whose language is `lang`."""
    import yaml

    folders = [name for name, code in CHATTERBOT_LANGS.items() if code == lang]
    if not folders:
        raise ValueError(f"multilingual: language {lang!r} is in no chatterbot-corpus folder")
    convs: list[list[str]] = []
    for name in folders:
        for path in sorted((root / name).glob("*.yml")):
            try:
                data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
            except yaml.YAMLError as e:
                raise ValueError(f"{path}: not valid YAML: {str(e).splitlines()[0]}") from e
            for conv in data.get("conversations") or []:
                turns = [str(t).strip() for t in conv if isinstance(t, str | int | float) and str(t).strip()]
                if len(turns) >= 2:
                    convs.append(turns)
    return convs


def language_of(text: str) -> tuple[str, float]:
    """lid.176's label and probability, on the text with newlines folded."""
    return identify(" ".join(text.split()))


def _as_dialog(turns: Sequence[str], source: str) -> dict[str, Any]:
    n = len(turns) - len(turns) % 2
    messages = [{"role": ("user", "assistant")[i % 2], "content": t} for i, t in enumerate(turns[:n])]
    return {"messages": messages, "source": source}


@register
class Multilingual(Capability):
    name = "multilingual"
    category = "multilingual"
    Config = MultilingualConfig
    reply_fn: ReplyFn | None = None  # tests plant a scripted generator; None samples the model

    # ------------------------------------------------------------ data

    def splits(self, seed: int) -> dict[str, tuple[list[list[str]], list[list[str]]]]:
        """lang -> (held-in, held-out) conversations; the same seed always holds out the same ones."""
        root = chatterbot_root()
        out = {}
        for lang in self.config.languages:
            convs = list({tuple(c): c for c in read_conversations(root, lang)}.values())  # verbatim repeats once
            out[lang] = split_held_out(convs, self.config.held_out_fraction, seed)
        return out

    def generate(self, ctx: CapabilityContext) -> Outputs:
        out = Outputs()
        cfg = self.config
        rng = random.Random(ctx.seed)
        splits = self.splits(ctx.seed)
        replies_by_lang = {lang: [c[1] for c in train] for lang, (train, _) in splits.items()}
        for lang, (train, _) in splits.items():
            picked = train if not cfg.max_dialogs_per_language else train[: cfg.max_dialogs_per_language]
            for turns in picked:
                self._human(out, lang, turns)
            others = [r for other, rs in replies_by_lang.items() if other != lang for r in rs]
            for turns in picked[: len(picked) // 2] if others else []:
                pair = Preference([{"role": "user", "content": turns[0]}], [turns[1], rng.choice(others)],
                                  "significantly_better", f"chatterbot-{lang}", {"language": lang})  # fmt: skip
                out.prefs.append(preference_row(pair))
        prompts = [
            (lang, c[0]) for lang, (train, _) in splits.items() for c in train[: cfg.policy_prompts_per_language]
        ]
        self._rejection_sample(out, ctx, prompts)
        out.stats["by_language"] = {lang: sum(r.get("language") == lang for r in out.kept) for lang in splits}
        return out

    def _human(self, out: Outputs, lang: str, turns: Sequence[str]) -> None:
        row = {**_as_dialog(turns, f"chatterbot-{lang}"), "language": lang}
        said = " ".join(m["content"] for m in row["messages"] if m["role"] == "assistant")
        got, score = language_of(said)
        if got != lang and score >= self.config.min_lid_score:
            out.drop(row, "language_mismatch", detected=got, score=round(score, 3))
        else:
            out.kept.append(row)

    def _rejection_sample(self, out: Outputs, ctx: CapabilityContext, prompts: list[tuple[str, str]]) -> None:
        cfg = self.config
        messages = [[{"role": "user", "content": text}] for _, text in prompts]
        samples = policy_replies(
            self.reply_fn, ctx.policy, ctx.chat, messages, cfg.k, cfg.max_new_tokens, cfg.temperature, ctx.seed
        )
        for (lang, _), prompt, replies in zip(prompts, messages, samples, strict=True):
            good, bad = None, None
            for reply in replies:
                row = {"messages": [*prompt, {"role": "assistant", "content": reply}],
                       "source": f"rs-{lang}", "language": lang}  # fmt: skip
                got, score = language_of(reply) if reply.strip() else ("und", 0.0)
                if not reply.strip():
                    out.drop(row, "empty_reply")
                elif got != lang or score < cfg.min_lid_score:
                    out.drop(row, "language_mismatch", detected=got, score=round(score, 3))
                    bad = bad or reply
                elif good is None:
                    out.kept.append(row)
                    good = reply
                else:
                    out.drop(row, "extra_sample")  # one kept reply per prompt, as RS keeps the best of K
            if good and bad and good != bad:
                pair = Preference(prompt, [good, bad], "significantly_better", f"rs-{lang}", {"language": lang})
                out.prefs.append(preference_row(pair))

    # ------------------------------------------------------------ evaluation

    def evaluate(self, model_dir: Path, ctx: CapabilityContext) -> dict[str, Any]:
        """Language match of greedy replies to held-out prompts (the value), and MGSM-style accuracy."""
        cfg = self.config
        held = [(lang, c[0]) for lang, (_, test) in self.splits(ctx.seed).items()
                for c in test[: cfg.eval_prompts_per_language]]  # fmt: skip
        problems = mgsm_problems(cfg.mgsm_languages, cfg.mgsm_per_language, seed=ctx.seed + 1)
        prompts = [[{"role": "user", "content": text}] for _, text in held]
        prompts += [[{"role": "user", "content": p.question}] for p in problems]
        sampled = policy_replies(self.reply_fn, model_dir, ctx.chat, prompts, 1, cfg.eval_max_new_tokens)
        replies = [r[0] for r in sampled]
        match = [language_of(r)[0] == lang if r.strip() else False for (lang, _), r in zip(held, replies, strict=False)]
        right = [p.check(r) for p, r in zip(problems, replies[len(held) :], strict=True)]
        rate = sum(match) / len(match) if match else 0.0
        acc = sum(right) / len(right) if right else 0.0
        by_lang = {lang: sum(m for (g, _), m in zip(held, match, strict=True) if g == lang) for lang in cfg.languages}
        return {
            "metric": "language_match",
            "value": rate,
            "ci95": ci95(rate, len(match)),
            "n": len(match),
            "matched_by_language": by_lang,
            "mgsm_accuracy": acc,
            "mgsm_ci95": ci95(acc, len(right)),
            "mgsm_n": len(right),
        }


# ---------------------------------------------------------------- MGSM-style word problems

# (lang, template, op): a, b are filled in; the answer is computed, never typed. MGSM [Shi et al. 2022] is
# grade-school maths in 10 languages; these one-step problems are what a 135M model can attempt.
_MGSM: list[tuple[str, str, str]] = [
    ("en", "Anna has {a} apples. She buys {b} more apples. How many apples does Anna have now?", "+"),
    ("en", "A box holds {a} pencils. Tom takes {b} pencils out. How many pencils are left in the box?", "-"),
    ("en", "There are {a} rows of chairs with {b} chairs in each row. How many chairs are there?", "*"),
    ("de", "Anna hat {a} Äpfel. Sie kauft {b} weitere Äpfel. Wie viele Äpfel hat Anna jetzt?", "+"),
    ("de", "In einer Schachtel sind {a} Stifte. Tom nimmt {b} heraus. Wie viele Stifte sind noch darin?", "-"),
    ("de", "Es gibt {a} Reihen mit je {b} Stühlen. Wie viele Stühle sind es insgesamt?", "*"),
    ("fr", "Anna a {a} pommes. Elle achète {b} pommes de plus. Combien de pommes Anna a-t-elle maintenant ?", "+"),
    ("fr", "Une boîte contient {a} crayons. Tom en retire {b}. Combien de crayons reste-t-il dans la boîte ?", "-"),
    ("fr", "Il y a {a} rangées de {b} chaises chacune. Combien y a-t-il de chaises en tout ?", "*"),
    ("es", "Ana tiene {a} manzanas. Compra {b} manzanas más. ¿Cuántas manzanas tiene Ana ahora?", "+"),
    ("es", "Una caja tiene {a} lápices. Tomás saca {b} lápices. ¿Cuántos lápices quedan en la caja?", "-"),
    ("es", "Hay {a} filas de sillas con {b} sillas en cada fila. ¿Cuántas sillas hay en total?", "*"),
    ("it", "Anna ha {a} mele. Compra altre {b} mele. Quante mele ha Anna adesso?", "+"),
    ("it", "Una scatola contiene {a} matite. Tommaso ne prende {b}. Quante matite restano nella scatola?", "-"),
    ("it", "Ci sono {a} file di sedie con {b} sedie ciascuna. Quante sedie ci sono in tutto?", "*"),
    ("pt", "Ana tem {a} maçãs. Ela compra mais {b} maçãs. Quantas maçãs Ana tem agora?", "+"),
    ("pt", "Uma caixa tem {a} lápis. Tomás tira {b} lápis. Quantos lápis restam na caixa?", "-"),
    ("pt", "Há {a} filas de cadeiras com {b} cadeiras em cada fila. Quantas cadeiras há no total?", "*"),
]  # fmt: skip
_NUMBER = re.compile(r"-?\d+(?:[.,]\d+)?")


@dataclass
class WordProblem:
    language: str
    question: str
    answer: int

    def check(self, reply: str) -> bool:
        """The last number in the reply is the answer (MGSM's exact-match on the final number)."""
        numbers = _NUMBER.findall(reply.replace("\u202f", "").replace("\xa0", ""))
        return bool(numbers) and numbers[-1].replace(",", ".") in (str(self.answer), f"{self.answer}.0")


def mgsm_problems(languages: Sequence[str], per_language: int, seed: int = 0) -> list[WordProblem]:
    """`per_language` problems per language with distinct operands; answers computed from the operands."""
    rng = random.Random(seed)
    by_lang: Mapping[str, list[tuple[str, str]]] = {
        lang: [(t, op) for g, t, op in _MGSM if g == lang] for lang in languages
    }
    out = []
    for lang, templates in by_lang.items():
        if not templates:
            raise ValueError(f"multilingual: no MGSM-style templates for language {lang!r}")
        for i in range(per_language):
            template, op = templates[i % len(templates)]
            a, b = rng.randint(3, 20), rng.randint(2, 9)
            a, b = (a + b, b) if op == "-" else (a, b)  # a positive difference
            answer = {"+": a + b, "-": a - b, "*": a * b}[op]
            out.append(WordProblem(lang, template.format(a=a, b=b), answer))
    return out
