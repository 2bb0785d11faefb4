"""The relevance floor, the no-answer sentence, refusal recognition and cited sources."""

from __future__ import annotations

import pytest
from langchain_core.documents import Document

from rag.answer.grounding import (
    DEFAULT_FLOORS,
    NO_ANSWER,
    RelevanceFloor,
    calibrate_floor,
    cited_ranks,
    floor_for,
    index_vocabulary,
    is_refusal,
    judge,
    mark_cited,
    relevance,
    unknown_share,
)
from rag.settings import LOCAL_EMBEDDING_MODEL_ID


def _doc(text: str, score: float, rank: int = 1) -> Document:
    return Document(page_content=text, metadata={"dense_score": score, "score": score, "rank": rank}, id=f"d{rank}")


def test_floor_per_embedding_model_and_override() -> None:
    minilm = floor_for(LOCAL_EMBEDDING_MODEL_ID)
    assert minilm is DEFAULT_FLOORS[LOCAL_EMBEDDING_MODEL_ID]
    assert 0.0 < minilm.floor < 1.0
    assert floor_for("amazon.titan-embed-text-v2:0") is None  # not calibrated: no floor, only refusals
    override = floor_for(LOCAL_EMBEDDING_MODEL_ID, 0.5)
    assert override == RelevanceFloor(0.5, minilm.unknown_word_penalty, minilm.corpus_weight, "RELEVANCE_FLOOR")
    assert floor_for("some-model", 0.3).floor == 0.3


def test_unknown_words_lower_the_relevance() -> None:
    vocabulary = index_vocabulary([Document("Studio notebooks run on managed instances."), Document("Spot training")])
    assert unknown_share("studio notebooks instances", vocabulary) == 0.0
    assert unknown_share("Textract notebooks", vocabulary) == pytest.approx(0.5)  # plural/singular known
    assert unknown_share("anything", None) == 0.0
    assert unknown_share("the a of", vocabulary) == 0.0  # no content words
    floor = RelevanceFloor(0.4, unknown_word_penalty=0.2)
    assert relevance("Textract notebooks", 0.5, floor, vocabulary) == pytest.approx(0.4)


def test_the_corpus_background_lowers_the_relevance() -> None:
    floor = RelevanceFloor(0.3, unknown_word_penalty=0.2, corpus_weight=0.5)
    # cosine 0.5, the query's cosine with the index centroid 0.4: 0.5 - 0.5 * 0.4
    assert relevance("anything", 0.5, floor, None, 0.4) == pytest.approx(0.3)
    assert relevance("anything", 0.5, floor, None) == pytest.approx(0.5)  # no centroid: the cosine alone
    # the same passage cosine: a question near the whole corpus (a one-topic corpus) is not grounded,
    # one that stands out from the corpus background is
    near_everything = Document("x", metadata={"dense_score": 0.5, "corpus_score": 0.6}, id="x")
    stands_out = Document("x", metadata={"dense_score": 0.5, "corpus_score": 0.2}, id="x")
    assert not judge("q", [near_everything], floor, None).grounded
    verdict = judge("q", [stands_out], floor, None)
    assert verdict.grounded and verdict.relevance == pytest.approx(0.4) and verdict.cosine == pytest.approx(0.5)
    # an explicit background (the user's own question's, for a condensed retrieval) wins over the chunks'
    assert judge("q", [near_everything], floor, None, corpus_cosine=0.2).grounded


def test_judge_keeps_only_passages_above_the_floor() -> None:
    floor = RelevanceFloor(0.4, unknown_word_penalty=0.0)
    docs = [_doc("a", 0.7, 1), _doc("b", 0.3, 2), _doc("c", 0.45, 3)]
    verdict = judge("q", docs, floor, None)
    assert verdict.grounded and verdict.relevance == pytest.approx(0.7)
    assert [d.id for d in verdict.relevant] == ["d1", "d3"]
    weak = judge("q", [_doc("b", 0.3)], floor, None)
    assert not weak.grounded and weak.relevant == []
    assert not judge("q", [], floor, None).grounded
    assert judge("q", [_doc("b", 0.1)], None, None).grounded  # no floor: anything retrieved counts


def test_refusals_recognised() -> None:
    assert is_refusal(NO_ANSWER)
    assert is_refusal(f"  {NO_ANSWER.upper()}  ")
    assert is_refusal(f"Sorry. {NO_ANSWER}")
    assert is_refusal("I don't know.")
    assert is_refusal("I do not know the answer to that based on these documents.")
    assert is_refusal("The provided documents do not contain information about Textract pricing.")
    assert is_refusal("")
    assert not is_refusal("Studio is free; you pay for compute [1].")
    assert not is_refusal("You pay per hour [2]. The documents do not say whether GPUs cost more.")
    assert not is_refusal("I don't know of any limit other than the one in [1]: 5 GB per object [1].")


def test_cited_flags_from_markers() -> None:
    assert cited_ranks("A [1], B [3] and [1] again.") == {1, 3}
    docs = [_doc("a", 0.7, 1), _doc("b", 0.6, 2), _doc("c", 0.5, 3)]
    marked = mark_cited(docs, "Yes [1]. Also [3].")
    assert [d.metadata["cited"] for d in marked] == [True, False, True]
    assert "cited" not in docs[0].metadata  # copies
    # no markers: the documents the model was given count as cited, the rest do not
    unmarked = mark_cited(docs, "Yes, it is free.", given=docs[:2])
    assert [d.metadata["cited"] for d in unmarked] == [True, True, False]


def test_calibration_picks_the_highest_safe_floor() -> None:
    answerable = {"a": [0.30, 0.50, 0.55, 0.60, 0.70, 0.80, 0.62, 0.64, 0.66, 0.68] * 2, "b": [0.5, 0.6, 0.7, 0.8]}
    unanswerable = {"a": [0.1, 0.2, 0.45, 0.52], "b": [0.2, 0.3, 0.55]}
    result = calibrate_floor(answerable, unanswerable, max_false_refusals=0.10, step=0.01)
    # a: 0.30 may be refused (2/20 = 0.10); refusing 0.52 would refuse 4/20 in "a" and 1/4 in "b".
    # Every floor in (0.45, 0.50] refuses the same: the lowest of them wins (0.46 on the 0.01 grid).
    assert result.floor == pytest.approx(0.46)
    assert result.falsely_refused == {"a": 0.10, "b": 0.0}
    assert result.refused == {"a": 0.75, "b": pytest.approx(2 / 3)}
    strict = calibrate_floor(answerable, unanswerable, max_false_refusals=0.0, step=0.01)
    assert strict.floor <= 0.30 and strict.falsely_refused == {"a": 0.0, "b": 0.0}
    with pytest.raises(ValueError, match="same"):
        calibrate_floor({"a": [0.1]}, {"b": [0.1]})
    with pytest.raises(ValueError, match="at least one"):
        calibrate_floor({"a": []}, {"a": [0.1]})
