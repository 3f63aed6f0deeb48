"""Varied text for golden tests, all offline: stdlib source, system docs/translations if present, and text
written here in many languages and scripts, plus generated edge cases (digits, whitespace, emoji, 100K)."""

from __future__ import annotations

import gettext
import random
import sysconfig
from functools import cache
from pathlib import Path

STDLIB = Path(sysconfig.get_paths()["stdlib"])

# Two short sentences per language; ≥ 10 languages and scripts (Latin, Cyrillic, Greek, Arabic, Hebrew,
# Devanagari, Bengali, Tamil, Thai, Han, Kana, Hangul, Georgian, Armenian, Ethiopic).
MULTILINGUAL = {
    "en": "The quick brown fox doesn't jump; it's resting. THEY'LL be back at 10:45 on Monday!",
    "de": "Größere Straßen führen über die Brücke. Die Bäckerei öffnet um 7 Uhr früh.",
    "fr": "L'été dernier, nous sommes allés à la mer. Où est la bibliothèque, s'il vous plaît ?",
    "es": "¿Dónde está el niño? ¡Qué día tan bonito hace hoy en Málaga!",
    "pt": "A informação foi publicada ontem. Não sei se você já viu as ações.",
    "it": "Perché non vieni con noi? È già tardi e la città è piena di gente.",
    "pl": "Zażółć gęślą jaźń. Wszystkie dzieci bawią się na podwórku.",
    "tr": "İstanbul'da hava çok güzel. Öğrenciler sınavdan önce çalışıyor.",
    "vi": "Tiếng Việt có nhiều dấu thanh. Hôm nay trời đẹp quá!",
    "ru": "Съешь же ещё этих мягких французских булок, да выпей чаю. Москва — столица России.",
    "uk": "Їжак ґречно пʼє сік. Київ розташований на берегах Дніпра.",
    "el": "Η γρήγορη καφέ αλεπού πηδάει πάνω από τον τεμπέλη σκύλο. Καλημέρα σας!",
    "ar": "مرحبا بالعالم. اللغة العربية جميلة جدا، وتكتب من اليمين إلى اليسار.",
    "he": "שלום עולם. העברית נכתבת מימין לשמאל.",
    "fa": "سلام دنیا. زبان فارسی بسیار زیباست.",
    "hi": "नमस्ते दुनिया। हिंदी भारत की प्रमुख भाषाओं में से एक है।",
    "bn": "আমি বাংলায় গান গাই। ঢাকা বাংলাদেশের রাজধানী।",
    "ta": "வணக்கம் உலகம். தமிழ் ஒரு பழமையான மொழி.",
    "th": "สวัสดีชาวโลก ภาษาไทยไม่มีการเว้นวรรคระหว่างคำ",
    "zh": "你好，世界。大型语言模型需要大量的训练数据。",
    "ja": "こんにちは世界。東京は日本の首都です。カタカナとひらがな。",
    "ko": "안녕하세요 세계. 한국어는 한글로 씁니다.",
    "ka": "გამარჯობა მსოფლიო. საქართველოს დედაქალაქი თბილისია.",
    "hy": "Բարեւ աշխարհ։ Երեւանը Հայաստանի մայրաքաղաքն է։",
    "am": "ሰላም ለዓለም። አዲስ አበባ የኢትዮጵያ ዋና ከተማ ናት።",
    "sw": "Habari ya dunia. Kiswahili kinazungumzwa Afrika Mashariki.",
}

# Different sentences in the same scripts: held out from training on MULTILINGUAL.
MULTILINGUAL_EXTRA = (
    "Die Katze schläft auf dem warmen Sofa, während draußen der Regen fällt.",
    "Les élèves préparent leurs examens à la bibliothèque municipale.",
    "El tren de alta velocidad llega a Sevilla en dos horas y media.",
    "Вчера вечером мы долго гуляли по набережной и разговаривали о книгах.",
    "Το καλοκαίρι πηγαίνουμε συχνά στα νησιά του Αιγαίου.",
    "ذهبنا إلى السوق القديم واشترينا التوابل والفواكه الطازجة.",
    "बच्चे मैदान में क्रिकेट खेल रहे हैं और शिक्षक उन्हें देख रहे हैं।",
    "我们明天早上八点在火车站见面，然后一起去博物馆。",
    "週末は家族と一緒に山へハイキングに行きました。",
    "도서관에서 새로운 프로그래밍 책을 빌렸습니다.",
    "ฉันชอบกินข้าวเหนียวมะม่วงในฤดูร้อน",
    "Öğretmen tahtaya yeni bir problem yazdı ve herkes çözmeye çalıştı.",
)

ENGLISH = [
    "I'LL pay $1234567 for Llama-3.1",
    "This is a test sentence.",
    "We're sure you've seen it; they'd said I'm fine and she'll go.",
    "WE'RE SURE YOU'VE SEEN IT; THEY'D SAID I'M FINE AND SHE'LL GO.",
    "Pre-training data is curated from a variety of sources with a knowledge cutoff at the end of 2023.",
    "e-mail: someone@example.com, url: https://example.org/path?q=1&r=2#frag",
    "Mr. O'Neil's dog—a 3-year-old—ran 2.5 km (1.55 mi) in 12'34\".",
    "\"Quotes\", 'single', `back`, «guillemets», „low“, and ‘curly’ ones.",
]

CODE = [
    "def f(x):\n\treturn x ** 2  # square\r\n",
    'int main(void) {\n    printf("%d\\n", 42);\n    return 0;\n}\n',
    "const xs = [1, 2, 3].map((x) => x * 2);\nconsole.log(`${xs}`);\n",
    'fn main() { let v: Vec<u8> = vec![0xff; 16]; println!("{:?}", v); }',
    "SELECT name, COUNT(*) FROM users WHERE id IN (1,2,3) GROUP BY name;",
    '<div class="a">&nbsp;<br/><script>var x = 1;</script></div>',
    "    \n        if (a && b || !c) { x += y >> 2; }\n\n\n",
    '{"key": [1, 2.5e-3, null, true], "nested": {"k": "v"}}',
]

EMOJI = [
    "😀😃😄😁",
    "👍🏽 👍🏿",
    "👨‍👩‍👧‍👦 family",
    "🇺🇸🇫🇷🇯🇵 flags",
    "1️⃣ #️⃣ keycaps",
    "🏳️‍🌈 ❤️‍🔥",
    "emoji🙂inside🙃words",
    "🦙" * 50,
]

SPECIAL_TEXT = [
    "<|begin_of_text|>",
    "<|end_of_text|>",
    "<|eot_id|>",
    "<|eom_id|>",
    "<|python_tag|>print(1)<|eom_id|>",
    "<|start_header_id|>user<|end_header_id|>\n\nhi<|eot_id|>",
    "<|finetune_right_pad_id|><|step_id|>",
    "<|reserved_special_token_0|> <|reserved_special_token_247|>",
    "<|image|>",
    "<|eot",
    "eot_id|>",
    "<|im_start|>assistant\n",
    "text <|eot_id|> more text",
]


def digit_runs() -> list[str]:
    runs = ["1" * n for n in range(1, 13)]
    runs += ["1234567890" * k for k in (1, 3, 10)]
    runs += ["3.14159265358979", "1,000,000.00", "0x1F2E3D", "2024-07-23T12:34:56Z", "+1 (555) 010-9999"]
    runs += ["٣٤٥٦٧", "①②③", "１２３４５", "१२३४", "12a34b567c8901"]
    return runs


def whitespace_runs() -> list[str]:
    runs = [" " * n for n in (1, 2, 3, 7, 64)] + ["\t" * n for n in (1, 4)] + ["\n" * n for n in (1, 2, 5)]
    runs += ["\r\n" * 3, " \n \n ", "a  b   c    d", "trailing   ", "   leading", "\u00a0\u00a0x", "\u3000全角"]
    runs += ["line\u2028sep\u2029para", "x\x0b\x0cy", "\t \t \n\r\n  \t", "word\n\n\n    indented"]
    return runs


def long_inputs() -> list[str]:
    rng = random.Random(0)
    letters = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJ"
    prose = (" ".join(MULTILINGUAL.values()) + "\n") * 200
    return [
        "a" * 100_000,
        " " * 100_000,
        "1" * 100_000,
        "\n" * 100_000,
        "".join(rng.choice(letters) for _ in range(100_000)),  # no whitespace: the 25,000-run guard cuts it
        ("x" * 30_000 + " " * 30_000) * 2,
        "😀" * 100_000,
        prose[:100_000],
        (prose * 3)[:450_000],  # crosses the 400,000-char chunk boundary
    ]


def random_unicode(n: int = 40, seed: int = 1) -> list[str]:
    rng = random.Random(seed)
    blocks = [(0x20, 0x7E), (0xA0, 0x24F), (0x370, 0x3FF), (0x400, 0x4FF), (0x590, 0x6FF), (0x900, 0x97F),
              (0x3040, 0x30FF), (0x4E00, 0x9FFF), (0xAC00, 0xD7A3), (0x1F300, 0x1FAFF), (0x2000, 0x206F)]  # fmt: skip
    out = []
    for _ in range(n):
        chars = []
        for _ in range(rng.randint(1, 200)):
            lo, hi = rng.choice(blocks)
            chars.append(chr(rng.randint(lo, hi)))
        out.append("".join(chars))
    return out


def stdlib_snippets(n: int = 40, seed: int = 2) -> list[str]:
    rng = random.Random(seed)
    files = sorted(STDLIB.glob("*.py"))
    out = []
    for f in rng.sample(files, min(n, len(files))):
        text = f.read_text(encoding="utf-8", errors="replace")
        start = rng.randrange(max(len(text) - 2000, 1))
        out.append(text[start : start + rng.randint(200, 2000)])
    return out


def system_docs(n: int = 20) -> list[str]:
    """Plain-text files from /usr/share/doc, when the machine has them."""
    root = Path("/usr/share/doc")
    files = sorted(root.glob("*/copyright"))[:n] if root.is_dir() else []
    return [f.read_text(encoding="utf-8", errors="replace")[:3000] for f in files]


@cache
def translations(lang: str, max_chars: int = 400_000) -> tuple[str, ...]:
    """Translated messages from /usr/share/locale/<lang>/*.mo (gettext catalogs), when present."""
    out, total = [], 0
    for f in sorted(Path(f"/usr/share/locale/{lang}/LC_MESSAGES").glob("*.mo")):
        try:
            with open(f, "rb") as fh:
                catalog = gettext.GNUTranslations(fh)._catalog
        except (OSError, UnicodeDecodeError, ValueError):
            continue
        for key, value in catalog.items():
            if key and isinstance(value, str) and value.strip():
                out.append(value)
                total += len(value)
                if total >= max_chars:
                    return tuple(out)
    return tuple(out)


def golden_strings() -> list[str]:
    texts = [*ENGLISH, *MULTILINGUAL.values(), *CODE, *EMOJI, *SPECIAL_TEXT]
    texts += digit_runs() + whitespace_runs() + random_unicode() + stdlib_snippets() + system_docs()
    for lang in ("de", "ru", "ja", "zh_CN", "ar", "ko"):
        texts += list(translations(lang, 20_000)[:10])
    texts += ["", "a", " ", "'s", "'S"]
    texts += long_inputs()
    return texts


def english_corpus(max_chars: int = 300_000, skip: int = 0) -> list[str]:
    """Stdlib modules (code and English docstrings) as training text."""
    out, total = [], 0
    for f in sorted(STDLIB.glob("*.py"))[skip:]:
        text = f.read_text(encoding="utf-8", errors="replace")
        out.append(text)
        total += len(text)
        if total >= max_chars:
            break
    return out
