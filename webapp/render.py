"""Safe text for the page, independent of Streamlit: user messages, answers, citations, source cards.

- User messages are shown as *plain text*: every Markdown character is escaped, so ``![](http://x)``
  is shown, not fetched.
- Answers keep simple Markdown (lists, emphasis), but: no images at all unless their host is on an
  allow-list (empty by default: ``WEBCHAT_IMAGE_HOSTS``), links only ``http(s)`` (others become
  their text), raw HTML shown as text, and ``[n]`` citations become links to the source cards.
- Bidirectional control characters (U+202A-U+202E, U+2066-U+2069, U+200E/U+200F, U+061C) are
  neutralised everywhere: shown as a visible ``⟦U+202E⟧`` marker instead of silently reordering
  text (CVE-2021-42574, "Trojan Source").

Markdown syntax handled is CommonMark as rendered by Streamlit's ``st.markdown``
(https://docs.streamlit.io/develop/api-reference/text/st.markdown).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit

#: Unicode bidirectional formatting characters (https://www.unicode.org/reports/tr9/#Explicit_Directional_Formatting_Characters).
BIDI_CONTROLS = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
_BIDI_RE = re.compile("[" + "".join(sorted(BIDI_CONTROLS)) + "]")
_MD_SPECIAL = re.compile(r"([\\`*_\[\]()<>#!|~:$&])")
_LINE_START = re.compile(r"^(\s*)(\d+)([.)])|^(\s*)([-+=>])", re.MULTILINE)
_IMAGE_RE = re.compile(r"!\[(?P<alt>[^\]]*)\]\((?P<url>[^)\s]*)(?:\s+\"[^\"]*\")?\)")
_LINK_RE = re.compile(r"(?<!!)\[(?P<text>[^\]]*)\]\((?P<url>[^)\s]*)(?:\s+\"[^\"]*\")?\)")
_REF_DEF_RE = re.compile(r"^( {0,3})\[(?P<label>[^\]]+)\]:[ \t]*(?P<url>\S+)", re.MULTILINE)
_CITATION_RE = re.compile(r"\[(\d{1,2})\](?!\()")
_SAFE_SCHEMES = ("http", "https")


def neutralise_bidi(text: str) -> str:
    """Replace every bidi control character with a visible ``⟦U+XXXX⟧`` marker."""
    return _BIDI_RE.sub(lambda m: f"⟦U+{ord(m.group()):04X}⟧", text)


def plain_markdown(text: str) -> str:
    """``text`` escaped so ``st.markdown`` shows it literally (no links, images, HTML or formatting).

    Line breaks are kept (two trailing spaces = a Markdown hard break).
    """
    escaped = _MD_SPECIAL.sub(r"\\\1", neutralise_bidi(text))
    escaped = _LINE_START.sub(
        lambda m: f"{m.group(1)}{m.group(2)}\\{m.group(3)}" if m.group(2) else f"{m.group(4)}\\{m.group(5)}", escaped
    )
    return "  \n".join(escaped.splitlines()) or "\u200b"


def safe_url(url: str) -> str | None:
    """``url`` when it is an absolute ``http(s)`` URL with a host, else None."""
    try:
        parts = urlsplit(url.strip())
    except ValueError:
        return None
    return url.strip() if parts.scheme.lower() in _SAFE_SCHEMES and parts.netloc else None


def _image_allowed(url: str, allowed_hosts: Iterable[str]) -> bool:
    safe = safe_url(url)
    return bool(safe) and (urlsplit(safe).hostname or "").lower() in {h.lower() for h in allowed_hosts}


def safe_answer_markdown(
    text: str, citation_anchors: Mapping[int, str] | None = None, allowed_image_hosts: Iterable[str] = ()
) -> str:
    """The answer as Markdown that cannot make the browser fetch anything or run anything.

    Args:
        text: the answer (Markdown from the model, or an extractive answer).
        citation_anchors: source number (1-based, as the answer cites it) → the card's anchor id;
            ``[n]`` with a known number becomes a link ``#<anchor>``.
        allowed_image_hosts: hosts whose images may be shown (default: none; an image becomes its
            alt text and URL as plain text).
    """
    allowed = tuple(allowed_image_hosts)
    out = neutralise_bidi(text).replace("<", "&lt;")

    kept: list[str] = []

    def image(m: re.Match[str]) -> str:
        if allowed and _image_allowed(m.group("url"), allowed):
            kept.append(m.group(0))
            return f"\x00{len(kept) - 1}\x00"
        alt = m.group("alt").strip() or "image"
        return f"\\[{alt}: {m.group('url')}\\]"

    out = _IMAGE_RE.sub(image, out.replace("\x00", ""))
    out = out.replace("![", "!\\[")  # reference-style or malformed images: never rendered
    out = re.sub("\x00(\\d+)\x00", lambda m: kept[int(m.group(1))], out)

    def link(m: re.Match[str]) -> str:
        url = m.group("url")
        if safe_url(url) or url.startswith("#src-"):
            return m.group(0)
        return m.group("text")

    out = _LINK_RE.sub(link, out)
    out = _REF_DEF_RE.sub(
        lambda m: m.group(0) if safe_url(m.group("url")) else f"{m.group(1)}\\[{m.group('label')}\\]: {m.group('url')}",
        out,
    )
    anchors = citation_anchors or {}

    def cite(m: re.Match[str]) -> str:
        number = int(m.group(1))
        return f"[\\[{number}\\]](#{anchors[number]})" if number in anchors else m.group(0)

    return _CITATION_RE.sub(cite, out)


def file_name(uri: str) -> str:
    """The last path segment of a source URI (``s3://b/documents/faq.csv`` → ``faq.csv``)."""
    return uri.rstrip("/").rsplit("/", 1)[-1]


def source_facts(source: Mapping[str, Any]) -> str:
    """One line of facts about a source: file, ``row N`` (1-based, the spreadsheet's line), page, score.

    The API's ``row`` is 0-based (the CSV loader's row index), so row 149 is shown as "row 150",
    the line a person finds in the spreadsheet. PDF pages are shown as the API sends them.
    """
    parts = [file_name(str(source.get("source") or "")) or "unknown source"]
    if source.get("row") is not None:
        parts.append(f"row {int(source['row']) + 1}")
    if source.get("page") is not None:
        parts.append(f"page {source['page']}")
    if source.get("score") is not None:
        parts.append(f"score {float(source['score']):.2f}")
    return neutralise_bidi(" · ".join(parts))


def anchor_id(answer_key: str, number: int) -> str:
    """The HTML id of source card ``number`` under the answer ``answer_key`` (only ``[A-Za-z0-9-]``)."""
    return "src-" + re.sub(r"[^A-Za-z0-9-]", "-", answer_key)[:64] + f"-{number}"


def ordered_cards(sources: list[Mapping[str, Any]]) -> list[tuple[int, Mapping[str, Any], bool]]:
    """``(number, source, cited)`` for the cards: cited sources first, then the others ("also retrieved").

    ``number`` is the source's 1-based rank as the API sent it (what ``[n]`` in the answer refers
    to); inside each group the rank order is kept. When the API marks no source as cited (older
    APIs, or the flag is unknown), all are shown in rank order as cited.
    """
    numbered = [(i, s, bool(s.get("cited"))) for i, s in enumerate(sources, start=1)]
    if not any(cited for _, _, cited in numbered):
        return [(i, s, True) for i, s, _ in numbered]
    return [c for c in numbered if c[2]] + [c for c in numbered if not c[2]]


def copy_text(answer: str, sources: list[Mapping[str, Any]]) -> str:
    """The answer as plain text for the clipboard, with its cited sources as footnotes.

    Example::

        SageMaker is a managed service [1].

        [1] Amazon_SageMaker_FAQs.csv · row 4 · What is Amazon SageMaker?
    """
    text = neutralise_bidi(answer).strip()
    cited = set(int(n) for n in _CITATION_RE.findall(text))
    notes = []
    for number, source, _ in ordered_cards(sources):
        if cited and number not in cited:
            continue
        facts = [file_name(str(source.get("source") or "")) or "unknown source"]
        if source.get("row") is not None:
            facts.append(f"row {int(source['row']) + 1}")
        if source.get("page") is not None:
            facts.append(f"page {source['page']}")
        if source.get("title"):
            facts.append(str(source["title"]))
        notes.append(f"[{number}] " + neutralise_bidi(" · ".join(facts)))
    return text + ("\n\n" + "\n".join(notes) if notes else "")
