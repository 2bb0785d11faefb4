"""Safe text: plain user messages, answers that fetch nothing, citations, card order, clipboard text."""

from __future__ import annotations

import pytest

from webapp.render import (
    anchor_id,
    copy_text,
    neutralise_bidi,
    ordered_cards,
    plain_markdown,
    safe_answer_markdown,
    safe_url,
    source_facts,
)


def test_bidi_controls_become_visible_markers():
    assert neutralise_bidi("abc\u202edef\u2066x\u200f") == "abc⟦U+202E⟧def⟦U+2066⟧x⟦U+200F⟧"
    assert neutralise_bidi("שלום hello") == "שלום hello"  # right-to-left text itself is fine


def test_plain_markdown_escapes_everything_that_renders():
    text = "![](http://x/p.png) [a](http://x) <img src=x> **b** `c` :red[d] $e$\n# h\n1. one\n- two"
    out = plain_markdown(text)
    for escaped in ("\\!\\[\\]\\(", "\\<img", "\\*\\*b", "\\`c\\`", "\\:red\\[d\\]", "\\$e\\$"):
        assert escaped in out
    assert "](" not in out
    assert out.splitlines()[1] == "\\# h  "
    assert out.splitlines()[2].startswith("1\\. one")
    assert out.splitlines()[3] == "\\- two"
    assert plain_markdown("alice@example.com") == "alice@example.com"  # ordinary text stays readable


@pytest.mark.parametrize(
    "answer",
    [
        "![x](http://evil.example/p.png)",
        '![x](http://evil.example/p.png "t")',
        "![x][ref]\n\n[ref]: http://evil.example/p.png",
        "<img src=http://evil.example/p.png>",
    ],
)
def test_answers_show_no_remote_image_by_default(answer):
    out = safe_answer_markdown(answer)
    assert "![" not in out and "<img" not in out


def test_image_allow_list():
    answer = "![chart](https://img.example.com/c.png) ![x](https://evil.example/p.png)"
    out = safe_answer_markdown(answer, allowed_image_hosts=["img.example.com"])
    assert "![chart](https://img.example.com/c.png)" in out
    assert "![x](https://evil" not in out


def test_only_http_links_survive():
    out = safe_answer_markdown("[a](javascript:alert) [b](data:text/html,x) [c](https://ok.example/x) [d](#src-1)")
    assert "javascript:" not in out and "data:text" not in out
    assert "[c](https://ok.example/x)" in out and "[d](#src-1)" in out
    assert safe_url("HTTPS://x.example") and not safe_url("//x.example") and not safe_url("mailto:a@b")


def test_citations_link_to_known_cards_only():
    out = safe_answer_markdown("As said [1] and [3], see [2](http://x.example).", {1: "src-a-1", 2: "src-a-2"})
    assert "[\\[1\\]](#src-a-1)" in out
    assert "[3]" in out and "#src-a-3" not in out  # no such card
    assert "[2](http://x.example)" in out  # a real link, not a citation


def test_source_facts_are_one_based_rows():
    assert source_facts({"source": "s3://b/documents/faq.csv", "row": 149, "score": 0.587}) == (
        "faq.csv · row 150 · score 0.59"
    )
    assert source_facts({"source": "guide.pdf", "page": 3, "score": 1}) == "guide.pdf · page 3 · score 1.00"


def test_cards_cited_first_keep_their_numbers():
    sources = [{"id": "a", "cited": False}, {"id": "b", "cited": True}, {"id": "c", "cited": True}]
    assert [(n, c) for n, _, c in ordered_cards(sources)] == [(2, True), (3, True), (1, False)]
    unknown = [{"id": "a"}, {"id": "b"}]  # no source marked: all in rank order
    assert [(n, c) for n, _, c in ordered_cards(unknown)] == [(1, True), (2, True)]


def test_copy_text_has_the_cited_sources_as_footnotes():
    sources = [
        {"source": "s3://b/faq.csv", "row": 3, "title": "What is SageMaker?", "cited": True},
        {"source": "guide.pdf", "page": 2, "cited": False},
    ]
    assert copy_text("Managed [1].", sources) == "Managed [1].\n\n[1] faq.csv · row 4 · What is SageMaker?"
    assert copy_text("No sources.", []) == "No sources."


def test_anchor_ids_are_safe():
    assert anchor_id("m1-<script>", 2) == "src-m1--script--2"
