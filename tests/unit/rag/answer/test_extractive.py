"""The extractive answerer quotes a FAQ row's answer (not its title), best passage first, and cites it."""

from __future__ import annotations

from langchain_core.documents import Document
from langchain_core.messages import HumanMessage, SystemMessage

from rag.answer.chain import ANSWER_PROMPT, DOCUMENT_PROMPT, _rank_and_source
from rag.answer.grounding import cited_ranks
from rag.answer.models import EXTRACTIVE_LABEL, ExtractiveChatModel


def _prompt(docs: list[Document], question: str) -> list:
    context = "\n\n".join(
        DOCUMENT_PROMPT.format(**d.metadata, page_content=d.page_content) for d in _rank_and_source(docs)
    )
    messages = ANSWER_PROMPT.format_messages(context=context, question=question)
    return [SystemMessage(messages[0].content), HumanMessage(messages[1].content)]


def _faq(title: str, answer: str, row: int) -> Document:
    return Document(f"{title}\n{answer}", metadata={"source": "faq.csv", "row": row, "title": title})


def test_faq_title_is_not_quoted_and_the_best_sentence_comes_first() -> None:
    docs = [
        _faq(
            "Which instances can I use with Managed Spot Training?",
            "Managed Spot Training can be used with all instances supported in SageMaker. "
            "Spot capacity is interrupted when EC2 needs it back. Checkpoints let training resume.",
            7,
        ),
        _faq("How do I get started?", "Open the console and create a notebook.", 8),
    ]
    answer = ExtractiveChatModel().invoke(_prompt(docs, "do checkpoints let interrupted training resume?")).content
    assert answer.startswith(EXTRACTIVE_LABEL)
    assert "Which instances can I use" not in answer  # the row's question title is not prose
    body = answer.removeprefix(EXTRACTIVE_LABEL).strip()
    # starts with the sentence of the best passage that shares the most words with the question
    assert body.startswith("Checkpoints let training resume.")
    assert cited_ranks(answer) == {1}  # passage 2 shares no word with the question: not quoted


def test_a_list_stays_with_its_introduction() -> None:
    docs = [
        _faq(
            "How can I host a model?",
            "There are three options for hosting a model: "
            "\nReal-time endpoints for low latency. \nServerless inference for spiky traffic. "
            "\nBatch transform for offline scoring.",
            3,
        )
    ]
    answer = ExtractiveChatModel().invoke(_prompt(docs, "what options do I have to host a model?")).content
    assert "three options" in answer
    assert "Real-time endpoints" in answer and "Serverless inference" in answer  # the options follow
    assert answer.endswith("[1]")


def test_non_faq_text_is_quoted_from_its_start() -> None:
    docs = [Document("EMR Studio is an IDE. It runs notebooks.", metadata={"source": "guide.md", "title": "Guide"})]
    answer = ExtractiveChatModel().invoke(_prompt(docs, "what is EMR Studio?")).content
    assert "EMR Studio is an IDE." in answer and "[1]" in answer
