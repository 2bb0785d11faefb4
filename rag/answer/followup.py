"""Follow-ups that stay on topic: does a question need the history, and what to retrieve it with.

A conversational turn is retrieved with one of three queries (:class:`QueryPlan`):

* ``alone`` — the user's question as typed, when it is self-contained: it names its own subject
  (no reference to the conversation, see :func:`refers_back`) and retrieves well by itself (its
  relevance clears the floor), or the history does not make its retrieval any better. A new
  topic is then never outranked by the earlier one.
* ``condensed`` — the question rewritten with the history (the condense model's output), when the
  question cannot stand alone: it refers back and retrieves poorly by itself.
* ``fused`` — both rankings merged by reciprocal rank fusion, when the signals disagree (the
  question refers back but also retrieves well alone, or names no reference but retrieves poorly
  alone while the condensed question retrieves well).

The lexical signals are English function words and patterns (pronouns, demonstratives, elliptic
openings such as "what about ...", very short questions), not topic words; the retrieval signal is
the relevance of :mod:`rag.answer.grounding` (best cosine with the unknown-word penalty) of the
question alone against the condensed question.

:func:`offline_condense` is what the extractive model (no generative model) answers to the condense
prompt: the last self-contained question of the history (the topic) followed by the new question.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from rag.text import content_words

QueryKind = Literal["alone", "condensed", "fused"]

#: Pronouns and demonstratives that point at something said before (English; third person and
#: demonstratives only: "one", "same", "such" occur as often in self-contained questions).
_REFERRING = frozenset(
    ["it", "its", "it's", "itself", "they", "them", "their", "theirs", "themselves", "those", "these", "that", "this"]
)
#: Openings that continue the previous turn ("and for GPUs?", "what about X?", "also, ...").
_ELLIPTIC_START = re.compile(
    r"^\s*(?:and|also|or|but|so|then|plus|what\s+about|how\s+about|what\s+if|same\s+for|in\s+that\s+case|"
    r"why\s+(?:not|so)|how\s+come|compared\s+to|versus|vs\.?)\b",
    re.IGNORECASE,
)
_WORD_RE = re.compile(r"[\w']+")
#: A question with at most this many content words is too short to carry its own subject.
SHORT_QUESTION_WORDS = 2
#: Weight of the question-alone ranking against 1.0 for the condensed one in a fused retrieval.
ALONE_WEIGHT = 1.0


def refers_back(question: str) -> bool:
    """True when the question's wording points at the conversation before it.

    Signals: a referring pronoun or demonstrative (``it``, ``those``, ``that``, ...), an elliptic
    opening (``and ...``, ``what about ...``), or at most :data:`SHORT_QUESTION_WORDS` content words.
    """
    if _ELLIPTIC_START.match(question):
        return True
    words = [w.lower() for w in _WORD_RE.findall(question)]
    if any(w in _REFERRING for w in words):
        return True
    return len([w for w in content_words(question) if len(w) > 1]) <= SHORT_QUESTION_WORDS


@dataclass(frozen=True)
class QueryPlan:
    """What a turn is retrieved with.

    Attributes:
        kind: ``alone``, ``condensed`` or ``fused``.
        reason: why (for logs and traces): ``no_history``, ``self_contained``, ``refers_back``,
            ``history_does_not_help``, ``retrieves_better_with_history``, ``unchanged_by_condense``.
    """

    kind: QueryKind
    reason: str


def plan_query(
    question: str,
    condensed: str,
    *,
    has_history: bool,
    alone_relevance: float | None = None,
    condensed_relevance: float | None = None,
    floor: float | None = None,
    unknown_share: float = 0.0,
    alone_cosine: float | None = None,
    condensed_cosine: float | None = None,
) -> QueryPlan:
    """Decide between the question alone, the condensed question, or both fused.

    Args:
        question: the user's question as typed.
        condensed: the condense model's standalone question (== ``question`` without history).
        has_history: whether the conversation has earlier turns.
        alone_relevance: relevance of the retrieval for ``question`` (see
            :func:`rag.answer.grounding.relevance`); None when not measured.
        condensed_relevance: the same for ``condensed``.
        floor: the relevance floor; None: no floor (the lexical signal alone decides).
        unknown_share: share of the question's content words the index never uses
            (:func:`rag.answer.grounding.unknown_share`).
        alone_cosine: the best passage's cosine for ``question``
            (:attr:`rag.answer.grounding.Verdict.cosine`); with ``condensed_cosine`` it decides
            whether the history makes a referring question's retrieval better (default: the
            relevances are compared).
        condensed_cosine: the same for ``condensed``.

    Returns:
        The plan (the caller retrieves accordingly).
    """
    if not has_history:
        return QueryPlan("alone", "no_history")
    if " ".join(condensed.split()).lower() == " ".join(question.split()).lower():
        return QueryPlan("alone", "unchanged_by_condense")
    alone_ok = alone_relevance is None or floor is None or alone_relevance >= floor
    alone_best = alone_cosine if alone_cosine is not None else alone_relevance
    condensed_best = condensed_cosine if condensed_cosine is not None else condensed_relevance
    if refers_back(question):
        if alone_best is not None and condensed_best is not None and alone_best >= condensed_best:
            # the pronoun has its antecedent in the question itself ("does EMR meet its SLA?"):
            # the history does not make the retrieval any better
            return QueryPlan("alone", "history_does_not_help")
        return QueryPlan("fused" if alone_ok and floor is not None else "condensed", "refers_back")
    if alone_ok:
        return QueryPlan("alone", "self_contained")
    condensed_ok = condensed_relevance is not None and floor is not None and condensed_relevance >= floor
    # An elliptic follow-up speaks the documents' language; a new question with words the documents
    # never use ("who won the game?") is off-topic, and the conversation's topic must not answer it.
    if condensed_ok and unknown_share == 0.0:
        return QueryPlan("fused", "retrieves_better_with_history")
    return QueryPlan("alone", "self_contained")


def offline_condense(question: str, earlier_questions: Sequence[str]) -> str:
    """The standalone question without a generative model: topic question + the new question.

    The topic is the latest earlier question that did not itself refer back (the last one that
    named its subject); when every earlier question refers back, the first one. The expansion is
    made for every follow-up, also one that looks self-contained: :func:`plan_query` then compares
    how well the question retrieves alone and expanded, and keeps the question alone when it does.

    Args:
        question: the new question.
        earlier_questions: the user's earlier questions, oldest first.
    """
    question = question.strip()
    if not earlier_questions:
        return question
    topic = next((q for q in reversed(earlier_questions) if not refers_back(q)), earlier_questions[0])
    return f"{topic.strip()} {question}".strip()
