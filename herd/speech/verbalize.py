"""Rule-based verbalizer: one written token and its reading (class) → its spoken form [P §8 speech generation].

This is the target generator for text normalization (TN): given the class of a token (a date or a fraction,
a year or a cardinal, "St." as street or saint), the spoken form is deterministic. Which class an ambiguous
token has is what the TN model in `herd.speech.tn` learns from the LM's embeddings of the context.

Written here rather than taken from num2words because TN needs readings num2words does not have (slash dates,
fractions, money with cents, times, units, abbreviations) and a spoken style without "and", commas or
hyphens; num2words is the independent reference in the tests for the number words both produce.

    candidates("3/4") == ("date", "fraction")
    verbalize("3/4", "fraction") == "three quarters";  verbalize("$3.50", "money") == "three dollars fifty cents"
"""

from __future__ import annotations

import re

_ONES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve",
         "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen"]  # fmt: skip
_TENS = ["", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]
_SCALES = [(10**12, "trillion"), (10**9, "billion"), (10**6, "million"), (10**3, "thousand")]
_ORDINAL_WORDS = {"one": "first", "two": "second", "three": "third", "five": "fifth", "eight": "eighth",
                  "nine": "ninth", "twelve": "twelfth"}  # fmt: skip
_MONTHS = ["january", "february", "march", "april", "may", "june", "july", "august", "september", "october",
           "november", "december"]  # fmt: skip
_CURRENCIES = {"$": ("dollar", "cent"), "€": ("euro", "cent"), "£": ("pound", "penny")}
_UNITS = {"kg": "kilogram", "g": "gram", "mg": "milligram", "km": "kilometer", "m": "meter", "cm": "centimeter",
          "mm": "millimeter", "mi": "mile", "lb": "pound", "lbs": "pound", "oz": "ounce", "ml": "milliliter",
          "mph": "mile per hour", "km/h": "kilometer per hour", "kb": "kilobyte", "mb": "megabyte",
          "gb": "gigabyte", "ghz": "gigahertz", "°c": "degree celsius", "°f": "degree fahrenheit"}  # fmt: skip
_ABBREVIATIONS = {"mr.": "mister", "mrs.": "missus", "ms.": "miz", "prof.": "professor", "etc.": "et cetera",
                  "e.g.": "for example", "i.e.": "that is", "vs.": "versus", "jr.": "junior", "ave.": "avenue",
                  "mt.": "mount", "no.": "number", "approx.": "approximately", "dept.": "department"}  # fmt: skip
_AMPM = {"am": "a m", "a.m.": "a m", "pm": "p m", "p.m.": "p m"}

# Ambiguous patterns and the readings the TN model chooses between (the first is only a label order).
AMBIGUOUS: dict[str, tuple[str, ...]] = {
    "slash": ("date", "fraction"),  # "on 3/4" vs "3/4 cup"
    "four_digit": ("year", "cardinal"),  # "in 1984" vs "1984 people"
    "st": ("street", "saint"),  # "Main St." vs "St. Paul"
    "dr": ("doctor", "drive"),  # "Dr. Smith" vs "Ocean Dr."
}
CLASSES: tuple[str, ...] = tuple(sorted({c for cs in AMBIGUOUS.values() for c in cs}))

_NUM = r"\d{1,3}(?:,\d{3})+|\d+"
_RE = {
    "money": re.compile(rf"([$€£])({_NUM})(?:\.(\d{{1,2}}))?"),
    "percent": re.compile(rf"({_NUM})(?:\.(\d+))?%"),
    "ordinal": re.compile(r"(\d+)(st|nd|rd|th)"),
    "time": re.compile(r"(\d{1,2}):(\d\d)"),
    "date3": re.compile(r"(\d{1,2})/(\d{1,2})/(\d{2}|\d{4})"),
    "slash": re.compile(r"(\d{1,3})/(\d{1,3})"),
    "decimal": re.compile(rf"({_NUM})\.(\d+)"),
    "number": re.compile(_NUM),
    "measure": re.compile(rf"({_NUM}(?:\.\d+)?)({'|'.join(sorted(map(re.escape, _UNITS), key=len, reverse=True))})"),
}


def cardinal(n: int) -> str:
    """Short-scale cardinal words: 1234 → "one thousand two hundred thirty four"."""
    if n < 0:
        return "minus " + cardinal(-n)
    if n < 20:
        return _ONES[n]
    if n < 100:
        tens, ones = divmod(n, 10)
        return _TENS[tens] + (f" {_ONES[ones]}" if ones else "")
    if n < 1000:
        hundreds, rest = divmod(n, 100)
        return f"{_ONES[hundreds]} hundred" + (f" {cardinal(rest)}" if rest else "")
    for scale, name in _SCALES:
        if n >= scale:
            head, rest = divmod(n, scale)
            return f"{cardinal(head)} {name}" + (f" {cardinal(rest)}" if rest else "")
    raise AssertionError("unreachable")


def ordinal(n: int) -> str:
    """21 → "twenty first": only the last word changes."""
    words = cardinal(n).split()
    last = words[-1]
    if last in _ORDINAL_WORDS:
        words[-1] = _ORDINAL_WORDS[last]
    elif last.endswith("y"):
        words[-1] = last[:-1] + "ieth"
    else:
        words[-1] = last + "th"
    return " ".join(words)


def year(n: int) -> str:
    """Years read in pairs: 1984 → "nineteen eighty four", 1905 → "nineteen oh five", 1900 → "nineteen
    hundred", but the first ten years of a millennium as cardinals ("two thousand five", "one thousand one"),
    as num2words reads them."""
    if n % 1000 < 10 or not 1000 <= n <= 9999:
        return cardinal(n)
    head, tail = divmod(n, 100)
    if tail == 0:
        return f"{cardinal(head)} hundred"
    return f"{cardinal(head)} oh {_ONES[tail]}" if tail < 10 else f"{cardinal(head)} {cardinal(tail)}"


def _int(s: str) -> int:
    return int(s.replace(",", ""))


def _digits(s: str) -> str:
    return " ".join(_ONES[int(c)] for c in s)


def _plural(word: str, n: float) -> str:
    if n == 1:
        return word
    head, *rest = word.split(" ", 1)  # "mile per hour" → "miles per hour"
    head = {"penny": "pence", "foot": "feet"}.get(head, head + ("es" if head.endswith("s") else "s"))
    return " ".join([head, *rest])


def number_words(s: str) -> str:
    """ "1,234" → cardinal, "3.14" → "three point one four"."""
    whole, _, frac = s.partition(".")
    return cardinal(_int(whole)) + (f" point {_digits(frac)}" if frac else "")


def fraction(num: int, den: int) -> str:
    """3/4 → "three quarters", 1/2 → "one half", 5/8 → "five eighths"."""
    if den == 1:
        return cardinal(num)
    name = {2: "half", 4: "quarter"}.get(den) or ordinal(den)
    if num != 1:
        name = "halves" if name == "half" else name + "s"
    return f"{cardinal(num)} {name}"


def date(month: int, day: int, yr: str | None = None) -> str:
    """US month/day: 3/4 → "march fourth"; 3/4/2020 → "march fourth twenty twenty"."""
    words = f"{_MONTHS[month - 1]} {ordinal(day)}"
    if yr is not None:
        words += " " + (year(int(yr)) if len(yr) == 4 else f"{'oh ' if yr[0] == '0' else ''}{cardinal(int(yr))}")
    return words


def money(symbol: str, whole: str, cents: str | None) -> str:
    """$3.50 → "three dollars fifty cents"; $0.75 → "seventy five cents"; $12 → "twelve dollars"."""
    unit, sub = _CURRENCIES[symbol]
    n = _int(whole)
    c = int(cents.ljust(2, "0")) if cents else 0
    parts = [f"{cardinal(n)} {_plural(unit, n)}"] if n or not c else []
    if c:
        parts.append(f"{cardinal(c)} {_plural(sub, c)}")
    return " ".join(parts)


def time_of_day(hour: int, minute: int) -> str:
    """10:30 → "ten thirty", 7:05 → "seven oh five", 9:00 → "nine o'clock"."""
    if minute == 0:
        return f"{cardinal(hour)} o'clock"
    return f"{cardinal(hour)} " + (f"oh {_ONES[minute]}" if minute < 10 else cardinal(minute))


def plain(word: str) -> str:
    """An ordinary word: lowercased, inner hyphens/slashes as spaces, other symbols dropped, digit runs read
    as cardinals ("mp3" → "mp three")."""
    word = re.sub(r"[-/–—]", " ", word.lower().replace("’", "'"))
    word = re.sub(r"\d+", lambda m: f" {cardinal(int(m.group()))} ", word)
    return " ".join(re.sub(r"[^a-z'à-ÿ ]", " ", word).split())


def is_number(core: str) -> bool:
    return bool(re.fullmatch(rf"(?:{_NUM})(?:\.\d+)?", core))


def candidates(core: str, prev: str | None = None) -> tuple[str, ...]:
    """The possible readings of one written token (punctuation peeled) after the previous token `prev`."""
    low = core.lower()
    if low == "st.":
        return AMBIGUOUS["st"]
    if low == "dr.":
        return AMBIGUOUS["dr"]
    if low in _ABBREVIATIONS:
        return ("abbreviation",)
    if low in _AMPM and prev is not None and (_RE["time"].fullmatch(prev) or is_number(prev)):
        return ("ampm",)
    if low in _UNITS and prev is not None and is_number(prev):
        return ("unit",)
    for kind in ("money", "percent", "ordinal", "time", "date3", "measure", "decimal"):
        if _RE[kind].fullmatch(low):
            return (kind.rstrip("3"),)
    if m := _RE["slash"].fullmatch(low):
        a, b = int(m[1]), int(m[2])
        return AMBIGUOUS["slash"] if 1 <= a <= 12 and 2 <= b <= 31 else ("fraction",)
    if _RE["number"].fullmatch(low):
        return AMBIGUOUS["four_digit"] if re.fullmatch(r"1[1-9]\d\d|20\d\d", low) else ("cardinal",)
    return ("plain",)


def verbalize(core: str, cls: str, prev: str | None = None) -> str:
    """The spoken form of one written token read as `cls` (one of `candidates(core, prev)`)."""
    low = core.lower()
    match cls:
        case "plain":
            return plain(core)
        case "street" | "saint" | "doctor" | "drive":
            return cls
        case "abbreviation":
            return _ABBREVIATIONS[low]
        case "ampm":
            return _AMPM[low]
        case "unit":
            return _plural(_UNITS[low], float(prev.replace(",", "")) if prev else 2)
        case "money":
            m = _RE["money"].fullmatch(low)
            return money(m[1], m[2], m[3])
        case "percent":
            m = _RE["percent"].fullmatch(low)
            return number_words(m[1] + (f".{m[2]}" if m[2] else "")) + " percent"
        case "ordinal":
            return ordinal(int(_RE["ordinal"].fullmatch(low)[1]))
        case "time":
            m = _RE["time"].fullmatch(low)
            return time_of_day(int(m[1]), int(m[2]))
        case "date":
            m = _RE["date3"].fullmatch(low) or _RE["slash"].fullmatch(low)
            return date(int(m[1]), int(m[2]), m[3] if m.re is _RE["date3"] else None)
        case "fraction":
            m = _RE["slash"].fullmatch(low)
            return fraction(int(m[1]), int(m[2]))
        case "measure":
            m = _RE["measure"].fullmatch(low)
            return f"{number_words(m[1])} {_plural(_UNITS[m[2]], float(m[1].replace(',', '')))}"
        case "decimal" | "cardinal":
            return number_words(low)
        case "year":
            return year(_int(low))
    raise ValueError(f"verbalize: unknown class {cls!r} for token {core!r}")


_TRAIL = ",;:!?\")]}'”’…"
_LEAD = "\"([{'“‘¿¡"


def split_words(text: str) -> list[tuple[str, str]]:
    """Whitespace words → (word, core): the core has surrounding punctuation peeled, keeping a final "." only
    where it belongs to an abbreviation ("St.", "a.m.", "e.g.")."""
    out = []
    for word in text.split():
        core = word.strip(_LEAD).rstrip(_TRAIL)
        low = core.lower()
        if core.endswith(".") and low not in _ABBREVIATIONS and low not in _AMPM and low not in ("st.", "dr."):
            core = core.rstrip(".").rstrip(_TRAIL)
        out.append((word, core))
    return out
