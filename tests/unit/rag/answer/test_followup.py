"""The follow-up decision: does a question depend on the history, and what is retrieved with."""

from __future__ import annotations

import pytest

from rag.answer.followup import QueryPlan, offline_condense, plan_query, refers_back

# Labelled by hand (not taken from the evaluation sets): True = only makes sense with the history.
LABELLED = [
    ("How much does it cost?", True),
    ("Which regions is that available in?", True),
    ("And for GPU instances?", True),
    ("What about Spark?", True),
    ("how about the free tier", True),
    ("Can those be shared with other accounts?", True),
    ("do I have to specify anything when I create them?", True),
    ("Is their data encrypted at rest?", True),
    ("pricing?", True),
    ("why?", True),
    ("Also, can I pause them?", True),
    ("What is Amazon SageMaker Ground Truth?", False),
    ("How do I terminate an EMR cluster from the CLI?", False),
    ("Which instance types support managed spot training?", False),
    ("Can I run Presto queries on EMR Serverless?", False),
    ("How is data labeling priced in SageMaker Ground Truth?", False),
]


@pytest.mark.parametrize(("question", "expected"), LABELLED)
def test_refers_back_on_labelled_questions(question: str, expected: bool) -> None:
    assert refers_back(question) is expected


def test_plan_without_history_or_unchanged_question() -> None:
    assert plan_query("q", "q", has_history=False) == QueryPlan("alone", "no_history")
    assert plan_query("What is EMR?", "what is  EMR?", has_history=True).kind == "alone"


def test_a_self_contained_new_topic_is_retrieved_alone() -> None:
    plan = plan_query(
        "How do I terminate an EMR cluster from the CLI?",
        "What is EMR Studio? How do I terminate an EMR cluster from the CLI?",
        has_history=True,
        alone_relevance=0.62,
        condensed_relevance=0.70,  # the old topic makes the expanded query score higher: it must not win
        floor=0.4,
    )
    assert plan == QueryPlan("alone", "self_contained")


def test_a_reference_uses_the_history() -> None:
    weak_alone = plan_query(
        "How much does it cost?", "Studio: how much does it cost?", has_history=True,
        alone_relevance=0.2, condensed_relevance=0.6, floor=0.4,
    )  # fmt: skip
    assert weak_alone == QueryPlan("condensed", "refers_back")
    strong_alone = plan_query(
        "Can those run on Spot instances?", "training jobs: can those run on Spot instances?", has_history=True,
        alone_relevance=0.55, condensed_relevance=0.6, floor=0.4,
    )  # fmt: skip
    assert strong_alone == QueryPlan("fused", "refers_back")
    own_antecedent = plan_query(
        "What do I get if EMR misses its SLA?", "EMR on EKS: what do I get if EMR misses its SLA?", has_history=True,
        alone_relevance=0.6, condensed_relevance=0.5, floor=0.4,
    )  # fmt: skip
    assert own_antecedent == QueryPlan("alone", "history_does_not_help")
    # the cosines, when given, decide whether the history helps (the relevances' corpus term would
    # favour the question with fewer topic words)
    helped = plan_query(
        "Which regions can I use it in?", "What is Studio Lab? Which regions can I use it in?", has_history=True,
        alone_relevance=0.45, condensed_relevance=0.42, floor=0.3, alone_cosine=0.5, condensed_cosine=0.6,
    )  # fmt: skip
    assert helped == QueryPlan("fused", "refers_back")
    assert plan_query("And for GPUs?", "Studio and for GPUs?", has_history=True).kind == "condensed"  # no floor


def test_an_elliptic_question_without_pronoun_is_caught_by_retrieval() -> None:
    # no pronoun, but alone it retrieves nothing relevant while with the history it does
    plan = plan_query(
        "Is idle time billed for pre-initialized capacity",
        "EMR Serverless workers Is idle time billed for pre-initialized capacity",
        has_history=True, alone_relevance=0.3, condensed_relevance=0.55, floor=0.4,
    )  # fmt: skip
    assert plan == QueryPlan("fused", "retrieves_better_with_history")
    both_weak = plan_query(
        "Who won the game last night", "EMR Who won the game last night", has_history=True,
        alone_relevance=0.1, condensed_relevance=0.3, floor=0.4,
    )  # fmt: skip
    assert both_weak.kind == "alone"  # a new (unanswerable) subject stays alone: the floor then refuses it
    off_topic = plan_query(
        "Who won the football game", "Can I use R? Who won the football game", has_history=True,
        alone_relevance=0.2, condensed_relevance=0.5, floor=0.4, unknown_share=0.5,
    )  # fmt: skip
    assert off_topic.kind == "alone"  # words the documents never use: the old topic must not answer it


def test_offline_condense_keeps_the_topic() -> None:
    assert offline_condense("How much does it cost?", []) == "How much does it cost?"
    history = ["What is SageMaker Studio?", "Does it cost anything?", "Which regions is it in?"]
    # the topic is the last question that named its subject, not the previous follow-up
    assert offline_condense("Can I use it offline?", history) == "What is SageMaker Studio? Can I use it offline?"
    switched = [*history, "How do I label data with Ground Truth?"]
    assert (
        offline_condense("how is that priced?", switched)
        == "How do I label data with Ground Truth? how is that priced?"
    )
    assert offline_condense("and them?", ["it?", "that?"]) == "it? and them?"  # no named subject: the first question
