"""Word tokens shared by the keyword side of retrieval and the extractive answerer."""

from __future__ import annotations

import re

_WORD_RE = re.compile(r"\w+", re.UNICODE)
#: Very common English words, left out so they do not drown the content words.
STOPWORDS = frozenset(
    [
        "a",
        "an",
        "and",
        "are",
        "as",
        "at",
        "be",
        "by",
        "can",
        "do",
        "does",
        "for",
        "from",
        "how",
        "i",
        "if",
        "in",
        "is",
        "it",
        "my",
        "of",
        "on",
        "or",
        "the",
        "to",
        "what",
        "when",
        "where",
        "which",
        "who",
        "why",
        "will",
        "with",
        "you",
        "your",
    ]
)


def content_words(text: str) -> list[str]:
    """Lower-cased ``\\w+`` tokens of ``text`` without :data:`STOPWORDS`, in order."""
    return [t for t in _WORD_RE.findall(text.lower()) if t not in STOPWORDS]
