"""Grounded or honestly absent: the relevance floor, the no-answer sentence, refusals and citations.

An answer is *grounded* when the tenant's documents hold something relevant to the question. Two
checks decide it:

1. **Before the answer model** (no tokens spent): the retrieval's *relevance* must clear a floor.
   Relevance is the best passage's cosine similarity to the retrieval query, minus
   ``corpus_weight`` x the query's cosine with the index *centroid* (the mean chunk vector), minus a
   penalty for the query's content words that occur nowhere in the index (``unknown_word_penalty``
   x their share). The centroid term measures how close the question is to the corpus as a whole:
   in a corpus on one topic (the EMR FAQ) any big-data question is near every passage, so its best
   cosine says less than the same cosine in a broader corpus; subtracting part of that background
   puts the tenants on one scale (sentence embeddings share a common direction, see Mu &
   Viswanath, "All-but-the-Top", ICLR 2018). The unknown words catch a question about "Textract
   pricing" to a SageMaker FAQ: it finds pricing rows with a fair cosine, but "textract" is in none
   of them. The floor depends on the embedding model (cosines of MiniLM
   and Titan live on different scales), so :data:`DEFAULT_FLOORS` keys it by model id;
   ``RELEVANCE_FLOOR`` overrides it for one deployment. :func:`calibrate_floor` derives it from
   labelled answerable and unanswerable questions (``python -m rag.eval --calibrate``).
2. **After the answer model**: a generative model is told to reply with :data:`NO_ANSWER` when the
   documents do not hold the answer; :func:`is_refusal` recognises that sentence (and the usual
   "I don't know" phrasings of Claude).

Either way the API returns :data:`NO_ANSWER`, ``grounded: false`` and no sources.

Citations: :func:`cited_ranks` reads the ``[n]`` markers of an answer (the answer prompt asks for
them; the extractive answerer writes them), which mark the sources ``cited: true``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from langchain_core.documents import Document

from rag.settings import LOCAL_EMBEDDING_MODEL_ID
from rag.text import content_words

#: What the API answers when the documents do not cover the question (also what Claude is asked to say).
NO_ANSWER = "The documents available to me do not cover this question."
#: Why an answer is not grounded (the ``reason`` label of ``ragapi_ungrounded_answers_total``).
REASON_NO_PASSAGE = "no_relevant_passage"
REASON_MODEL_REFUSED = "model_refused"
UNGROUNDED_REASONS = (REASON_NO_PASSAGE, REASON_MODEL_REFUSED)


@dataclass(frozen=True)
class RelevanceFloor:
    """The no-answer threshold of one embedding model.

    Attributes:
        floor: the lowest relevance (see :func:`relevance`, cosine units) that still counts as relevant.
        unknown_word_penalty: subtracted from the cosine per share (0..1) of the query's content
            words the index never contains.
        corpus_weight: share (0..1) of the query's cosine with the index centroid subtracted from
            the passage's cosine (0: the cosine alone).
        calibrated_on: where the numbers come from (for the README and logs).
    """

    floor: float
    unknown_word_penalty: float = 0.2
    corpus_weight: float = 0.0
    calibrated_on: str = ""


#: Floors by embedding model id (the index manifest's ``embedding_model``). MiniLM: calibrated with
#: :func:`calibrate_floor` on ``../shared/eval`` (both demo tenants pooled; README "Grounded answers").
#: Titan has no entry yet (no calibration run against Bedrock here): no floor, only the model's refusal.
DEFAULT_FLOORS: dict[str, RelevanceFloor] = {
    LOCAL_EMBEDDING_MODEL_ID: RelevanceFloor(
        floor=0.262,
        unknown_word_penalty=0.2,
        corpus_weight=0.5,
        calibrated_on="shared/eval dev sets, tenanta + tenantb",
    ),
}


def floor_for(embedding_model: str, override: float | None = None) -> RelevanceFloor | None:
    """The floor for ``embedding_model``: ``override`` (``RELEVANCE_FLOOR``) when given, else the default.

    Args:
        embedding_model: the embedding model id of the index.
        override: a floor set by the operator (cosine units); the default's word penalty and
            corpus weight are kept.

    Returns:
        The floor, or None when the model has none (every retrieval then counts as relevant).
    """
    default = DEFAULT_FLOORS.get(embedding_model)
    if override is None:
        return default
    base = default or RelevanceFloor(0.0)
    return RelevanceFloor(
        floor=override,
        unknown_word_penalty=base.unknown_word_penalty,
        corpus_weight=base.corpus_weight,
        calibrated_on="RELEVANCE_FLOOR",
    )


def index_vocabulary(documents: Iterable[Document]) -> frozenset[str]:
    """Every content word (:func:`rag.text.content_words`) of the chunks, for :func:`unknown_share`."""
    words: set[str] = set()
    for doc in documents:
        words.update(content_words(doc.page_content))
    return frozenset(words)


def _known(word: str, vocabulary: frozenset[str]) -> bool:
    # a plural or a possessive of a known word is known ("clusters", "studio's")
    return word in vocabulary or word.rstrip("s") in vocabulary or f"{word}s" in vocabulary


def unknown_share(query: str, vocabulary: frozenset[str] | None) -> float:
    """Share (0..1) of the query's content words (two letters or more) the index never uses.

    Args:
        query: the retrieval query.
        vocabulary: :func:`index_vocabulary` of the index; None or empty: 0.0 (nothing known).
    """
    if not vocabulary:
        return 0.0
    words = [w for w in content_words(query) if len(w) > 1]
    if not words:
        return 0.0
    return sum(1 for w in words if not _known(w, vocabulary)) / len(words)


def relevance(
    query: str,
    best_cosine: float,
    floor: RelevanceFloor,
    vocabulary: frozenset[str] | None,
    corpus_cosine: float = 0.0,
) -> float:
    """The score the floor is compared with.

    ``best_cosine - corpus_weight * corpus_cosine - unknown_word_penalty * unknown_share(query)``.

    Args:
        query: the retrieval query.
        best_cosine: the passage's cosine similarity with the query (-1..1).
        floor: the weights.
        vocabulary: the index's words (:func:`index_vocabulary`).
        corpus_cosine: the query's cosine with the index centroid (``corpus_score`` of the
            retrieved chunks; 0.0 when the index has no centroid).
    """
    penalty = floor.unknown_word_penalty * unknown_share(query, vocabulary)
    return best_cosine - floor.corpus_weight * corpus_cosine - penalty


def dense_score(doc: Document) -> float:
    """The chunk's cosine similarity to its query (``dense_score``, else ``score``; 0.0 if neither)."""
    value = doc.metadata.get("dense_score", doc.metadata.get("score", 0.0))
    try:
        return float(value)
    except (TypeError, ValueError):
        return 0.0


def corpus_score(doc: Document) -> float:
    """The query's cosine with the index centroid (``corpus_score``; 0.0 when absent)."""
    try:
        return float(doc.metadata.get("corpus_score", 0.0))
    except (TypeError, ValueError):
        return 0.0


@dataclass(frozen=True)
class Verdict:
    """The floor's decision for one retrieval.

    Attributes:
        grounded: some passage cleared the floor.
        relevance: the retrieval's relevance (see :func:`relevance`; -1.0 without documents).
        relevant: the documents whose own relevance clears the floor (best first as retrieved).
        cosine: the best passage's cosine similarity with the query (``dense_score``; -1.0 without
            documents): what :func:`rag.answer.followup.plan_query` compares between two
            retrievals of one turn, since the corpus term of :func:`relevance` would favour the
            query with fewer words from the corpus's topic.
    """

    grounded: bool
    relevance: float
    relevant: list[Document]
    cosine: float = -1.0


def judge(
    query: str,
    documents: Sequence[Document],
    floor: RelevanceFloor | None,
    vocabulary: frozenset[str] | None,
    corpus_cosine: float | None = None,
) -> Verdict:
    """Apply the floor to the documents retrieved for ``query``.

    Args:
        query: the text the documents were retrieved with.
        documents: retrieved chunks carrying ``dense_score`` (cosine to ``query``) and, when the
            index has a centroid, ``corpus_score`` (the query's cosine with it).
        floor: None: everything retrieved counts as relevant.
        vocabulary: the index's words, for the unknown-word penalty.
        corpus_cosine: the cosine with the index centroid to subtract (see :func:`relevance`);
            default: each document's ``corpus_score``.
    """
    if not documents:
        return Verdict(False, -1.0, [])
    cosine = max(dense_score(d) for d in documents)
    if floor is None:
        return Verdict(True, cosine, list(documents), cosine)
    penalty = floor.unknown_word_penalty * unknown_share(query, vocabulary)

    def background(doc: Document) -> float:
        return floor.corpus_weight * (corpus_score(doc) if corpus_cosine is None else corpus_cosine)

    scored = [(d, dense_score(d) - background(d) - penalty) for d in documents]
    best = max(s for _, s in scored)
    return Verdict(best >= floor.floor, best, [d for d, s in scored if s >= floor.floor], cosine)


# --------------------------------------------------------------------------------------------
# the model's side: refusals and citations

_REFUSAL_RE = re.compile(
    r"^\W*(?:"
    + re.escape(NO_ANSWER.rstrip(".")).replace(r"\ ", r"\s+")
    + r"|i\s+(?:do\s+not|don'?t|cannot|can'?t)\s+(?:know|find|answer)"
    + r"|(?:the\s+)?(?:provided\s+)?(?:documents?|context)\s+(?:do(?:es)?\s+not|don'?t)\s+"
    + r"(?:contain|cover|include|mention|say)"
    + r"|(?:there\s+is\s+)?no\s+information\s+(?:about|on|in)"
    + r")",
    re.IGNORECASE,
)
_CITATION_RE = re.compile(r"\[(\d{1,3})\]")


def is_refusal(answer: str) -> bool:
    """True when the model's answer says the documents do not hold the answer.

    Recognised: :data:`NO_ANSWER` (what the answer prompt asks for) anywhere in the answer, and an
    answer that *starts* with "I don't know" / "I cannot find" / "The documents do not contain ..."
    / "No information about ..." (Claude's usual phrasings). A longer answer that only mentions a
    gap later on is an answer.
    """
    text = answer.strip()
    if not text:
        return True
    if " ".join(NO_ANSWER.lower().split()).rstrip(".") in " ".join(text.lower().split()):
        return True
    return bool(_REFUSAL_RE.match(text)) and not _CITATION_RE.search(text)


def cited_ranks(answer: str) -> set[int]:
    """The document numbers an answer cites as ``[n]`` (1-based ranks of the context's documents)."""
    return {int(n) for n in _CITATION_RE.findall(answer)}


def mark_cited(documents: Sequence[Document], answer: str, given: Sequence[Document] | None = None) -> list[Document]:
    """Copies of ``documents`` with ``metadata["cited"]``.

    A document is cited when the answer names its ``rank`` as ``[n]``; an answer without any marker
    cites every document it was given (``given``, default all), since the model used them unnamed.
    """
    ranks = cited_ranks(answer)
    given_ids = {id(d) for d in (given if given is not None else documents)}
    out = []
    for position, doc in enumerate(documents, start=1):
        rank = doc.metadata.get("rank", position)
        cited = rank in ranks if ranks else id(doc) in given_ids
        out.append(Document(page_content=doc.page_content, metadata={**doc.metadata, "cited": cited}, id=doc.id))
    return out


# --------------------------------------------------------------------------------------------
# calibration


@dataclass(frozen=True)
class Calibration:
    """Result of :func:`calibrate_floor`.

    Attributes:
        floor: the chosen floor.
        refused: share of unanswerable questions refused at that floor, per set.
        falsely_refused: share of answerable questions refused at that floor, per set.
    """

    floor: float
    refused: dict[str, float]
    falsely_refused: dict[str, float]


def calibrate_floor(
    answerable: dict[str, Sequence[float]],
    unanswerable: dict[str, Sequence[float]],
    *,
    max_false_refusals: float = 0.05,
    step: float = 0.005,
) -> Calibration:
    """Choose the highest floor whose false refusals stay within ``max_false_refusals`` on every set.

    The relevances come from :func:`relevance` of each question's retrieval (one list per set, e.g.
    per tenant). Among floors that keep every set's answerable questions refused at most
    ``max_false_refusals`` of the time, the one refusing the most unanswerable questions (averaged
    over the sets) wins; ties go to the lower floor (fewer false refusals on unseen questions).

    Args:
        answerable: set name -> relevances of questions the documents answer.
        unanswerable: set name -> relevances of questions they do not.
        max_false_refusals: the allowed share (0..1) of answerable questions refused, per set.
        step: grid step of the candidate floors (cosine units).

    Raises:
        ValueError: a set is empty or the two dicts name different sets.
    """
    if set(answerable) != set(unanswerable) or not answerable:
        raise ValueError("answerable and unanswerable must name the same, non-empty sets")
    if any(not v for v in (*answerable.values(), *unanswerable.values())):
        raise ValueError("every set needs at least one question")
    values = sorted({round(x, 6) for v in (*answerable.values(), *unanswerable.values()) for x in v})
    low, high = values[0], values[-1] + step
    best: Calibration | None = None
    candidate = low
    while candidate <= high + 1e-9:
        floor = round(candidate, 6)
        false = {k: sum(1 for x in v if x < floor) / len(v) for k, v in answerable.items()}
        refused = {k: sum(1 for x in v if x < floor) / len(v) for k, v in unanswerable.items()}
        if all(f <= max_false_refusals for f in false.values()):
            mean = sum(refused.values()) / len(refused)
            if best is None or mean > sum(best.refused.values()) / len(best.refused) + 1e-12:
                best = Calibration(floor=floor, refused=refused, falsely_refused=false)
        candidate += step
    assert best is not None  # the lowest candidate refuses nothing, so it always qualifies
    return best
