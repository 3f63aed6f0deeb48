"""The judge's questions: one digit per answer, the scale's maximum best (or hardest).

Curation asks about web documents [P §3.1.1] (quality on 3 points, code and math on 2); post-training asks
about dialogs [P §4.2.3] (quality on 3 points for general English and 2 for code, difficulty on 3) and for
Instag-style intention tags.
"""

from __future__ import annotations

JUDGE_CHARS = 600  # of each document or dialog shown to the judge: a small model's context and a CPU's patience

# Curation: `{text}` is the start of a document.
DOCUMENT_PROMPTS = {
    "quality": (
        "Rate the following text as training data for a language model. Answer 2 if it is well-written, "
        "informative prose or documentation; 1 if it is acceptable but low in information; 0 if it is spam, "
        "advertising, boilerplate, headers or gibberish. Answer with one digit.\n\nText:\n{text}"
    ),
    "code": (
        "Does the following text contain programming source code or explain programming? Answer 1 for yes "
        "or 0 for no. Answer with one digit.\n\nText:\n{text}"
    ),
    "math": (
        "Does the following text contain mathematics, formulas or step-by-step logical reasoning (STEM)? "
        "Answer 1 for yes or 0 for no. Answer with one digit.\n\nText:\n{text}"
    ),
}

# Post-training: `{dialog}` is 'User: …\nAssistant: …', the last turns that fit.
QUALITY_PROMPT = (
    "Rate the assistant's last reply in the conversation below for accuracy, instruction following, and "
    "tone and presentation. Answer 2 if it is accurate, does what the user asked and reads well; 1 if it "
    "has minor problems; 0 if it is wrong, off-topic or badly written. Answer with one digit.\n\n{dialog}"
)
CODE_QUALITY_PROMPT = (
    "Judge the assistant's code in the conversation below: does it avoid bugs and do what the user "
    "intended? Answer 1 for yes or 0 for no. Answer with one digit.\n\n{dialog}"
)
DIFFICULTY_PROMPT = (
    "How difficult is the user's request in the conversation below for an AI assistant? Answer 0 if it "
    "is easy (a greeting or a simple fact), 1 if it is moderate, 2 if it is hard (it needs expert "
    "knowledge or several steps of reasoning). Answer with one digit.\n\n{dialog}"
)
INTENT_PROMPT = "List the intentions in this request as short tags, one per line.\n\nRequest: {request}"
# Two worked examples: a 135M judge follows a shown format far better than a described one.
INTENT_SHOTS = [
    ("Translate 'good morning' into French and explain when to use it.", "- translation\n- French\n- usage"),
    ("Hi there!", "- greeting"),
]
