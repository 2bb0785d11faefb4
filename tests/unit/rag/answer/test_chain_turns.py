"""One conversational turn through AnswerChain: which query retrieves, the floor, no model call."""

from __future__ import annotations

from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever
from pydantic import Field

from rag.answer.chain import AnswerChain, fuse_documents
from rag.answer.grounding import NO_ANSWER, RelevanceFloor
from tests.unit.api.fakes import ScriptedChatModel

TOPIC = "What is SageMaker Studio?"


def _doc(key: str, score: float) -> Document:
    return Document(
        f"text of {key}", metadata={"id": key, "source": "faq.csv", "dense_score": score, "score": score}, id=key
    )


class ByQuery(BaseRetriever):
    """Returns the documents listed for the query text; records the queries."""

    table: dict[str, list[Document]]
    queries: list[str] = Field(default_factory=list)

    def _get_relevant_documents(self, query: str, *, run_manager) -> list[Document]:
        self.queries.append(query)
        return self.table.get(query, [_doc("unrelated", 0.1)])


def _chain(table: dict[str, list[Document]], replies: list[str]):
    retriever = ByQuery(table=table, queries=[])
    model = ScriptedChatModel(replies=replies)
    chain = AnswerChain(retriever=retriever, llm=model, relevance_floor=RelevanceFloor(0.4, unknown_word_penalty=0.0))
    return chain, retriever, model


def test_a_self_contained_new_topic_keeps_its_own_sources() -> None:
    new = "How do I label data with Ground Truth?"
    condensed = f"{TOPIC} {new}"
    table = {new: [_doc("ground-truth", 0.7)], condensed: [_doc("studio", 0.8), _doc("ground-truth", 0.6)]}
    chain, retriever, _ = _chain(table, [condensed, "Use a labeling job [1]."])
    result = chain.run(new, [(TOPIC, "An IDE.")])
    assert result.query_kind == "alone"
    assert [d.id for d in result.documents] == ["ground-truth"]
    assert retriever.queries == [new, condensed]


def test_a_follow_up_with_a_pronoun_uses_the_history() -> None:
    follow_up = "How much does it cost?"
    condensed = f"{TOPIC} {follow_up}"
    table = {follow_up: [_doc("pricing-general", 0.3)], condensed: [_doc("studio-pricing", 0.7)]}
    chain, _, model = _chain(table, [condensed, "Studio is free [1]."])
    result = chain.run(follow_up, [(TOPIC, "An IDE.")])
    assert result.query_kind == "condensed" and result.grounded is True
    assert [d.id for d in result.documents] == ["studio-pricing"]
    assert result.documents[0].metadata["cited"] is True
    assert "text of studio-pricing" in model.calls[-1]["prompt"]


def test_nothing_above_the_floor_means_no_answer_call() -> None:
    chain, _, model = _chain({"Who won the game?": [_doc("x", 0.2)]}, ["must not be used"])
    result = chain.run("Who won the game?")
    assert result.answer == NO_ANSWER and result.grounded is False
    assert result.ungrounded_reason == "no_relevant_passage"
    assert result.documents == [] and model.calls == []


def test_a_follow_up_is_judged_against_its_own_background_not_the_topics() -> None:
    follow_up = "How much does it cost?"
    condensed = f"{TOPIC} {follow_up}"

    def doc(key: str, score: float, corpus: float) -> Document:
        found = _doc(key, score)
        found.metadata["corpus_score"] = corpus
        return found

    # the condensed question is close to the whole corpus (0.8); the user's own words are not (0.2)
    table = {follow_up: [doc("pricing-general", 0.3, 0.2)], condensed: [doc("studio-pricing", 0.7, 0.8)]}
    floor = RelevanceFloor(0.4, unknown_word_penalty=0.0, corpus_weight=0.5)
    retriever = ByQuery(table=table, queries=[])
    model = ScriptedChatModel(replies=[condensed, "Studio is free [1]."])
    chain = AnswerChain(retriever=retriever, llm=model, relevance_floor=floor)
    result = chain.run(follow_up, [(TOPIC, "An IDE.")])
    # 0.7 - 0.5 * 0.2 = 0.6 clears the floor (with the topic's background: 0.7 - 0.4 = 0.3 would not)
    assert result.grounded is True and result.query_kind == "condensed"
    assert [d.id for d in result.documents] == ["studio-pricing"]


def test_fusion_keeps_each_chunk_once_with_its_best_cosine() -> None:
    fused = fuse_documents([[_doc("a", 0.5), _doc("b", 0.4)], [_doc("b", 0.9), _doc("c", 0.3)]], [1.0, 1.0], k=3)
    assert [d.id for d in fused] == ["b", "a", "c"]  # b is in both lists
    assert fused[0].metadata["dense_score"] == 0.9
    with_background = [_doc("b", 0.4), _doc("b", 0.9)]
    for doc, corpus in zip(with_background, (0.1, 0.6), strict=True):
        doc.metadata["corpus_score"] = corpus
    kept = fuse_documents([[with_background[0]], [with_background[1]]], [1.0, 1.0], k=1)[0]
    assert (kept.metadata["dense_score"], kept.metadata["corpus_score"]) == (0.9, 0.6)  # one query's pair


def test_an_answer_saying_the_documents_lack_it_is_not_grounded() -> None:
    chain, _, model = _chain({"What is Studio?": [_doc("studio", 0.8)]}, ["The documents do not contain that."])
    result = chain.run("What is Studio?")
    assert result.answer == NO_ANSWER and result.grounded is False
    assert result.ungrounded_reason == "model_refused" and result.documents == []
    assert len(model.calls) == 1


def test_only_passages_above_the_floor_reach_the_model_and_uncited_ones_stay_sources() -> None:
    table = {"What is Studio?": [_doc("studio", 0.8), _doc("weak", 0.2)]}
    chain, _, model = _chain(table, ["An IDE [1]."])
    result = chain.run("What is Studio?")
    assert "text of studio" in model.calls[-1]["prompt"] and "text of weak" not in model.calls[-1]["prompt"]
    assert [(d.id, d.metadata["cited"]) for d in result.documents] == [("studio", True), ("weak", False)]
