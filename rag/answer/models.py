"""Chat model factory: Claude on Bedrock (production), an extractive answerer (offline), or a plug-in.

``LLM_PROVIDER`` chooses:

* ``bedrock`` — :class:`langchain_aws.ChatBedrockConverse` over the Converse / ConverseStream API
  (https://docs.aws.amazon.com/bedrock/latest/APIReference/API_runtime_ConverseStream.html), its
  boto3 client from :func:`rag.aws.make_client`;
* ``extractive`` — :class:`ExtractiveChatModel`, no generative model at all: it answers with the
  best retrieved passages, labelled as such, with citations, and streams them word by word;
* ``module.path:factory`` — ``factory(settings)`` returns any LangChain ``BaseChatModel``.

Per-request generation parameters (the API's ``temperature``, ``maxTokenCount``, ``topP``,
``topK``, ``stopSequences``) travel in a context variable (:func:`generation_scope`) and are applied
by :class:`GenerationParamsModel`, so one chain object serves every request.
"""

from __future__ import annotations

import contextlib
import contextvars
import importlib
import math
import re
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models.chat_models import BaseChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.messages.ai import UsageMetadata
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from pydantic import ConfigDict, Field

from rag.settings import Settings
from rag.text import content_words

EXTRACTIVE_MODEL_ID = "extractive"
EXTRACTIVE_LABEL = "Extractive answer (no generative model configured):"
#: Markers the prompts in :mod:`rag.answer.chain` use; the extractive model parses them.
CONDENSE_MARKER = "Standalone question:"
QUESTION_MARKER = "Question:"
_DOC_RE = re.compile(r'<doc n="(?P<n>\d+)"(?P<attrs>[^>]*)>\n?(?P<text>.*?)\n?</doc>', re.DOTALL)
_TITLE_RE = re.compile(r'\btitle="(?P<title>[^"]*)"')


@dataclass(frozen=True)
class GenerationParams:
    """Per-request generation parameters (the reference API's names in brackets).

    Attributes:
        temperature: sampling temperature, 0..1 (``temperature``).
        max_tokens: maximum output tokens (``maxTokenCount``).
        top_p: nucleus sampling mass, 0..1 (``topP``).
        top_k: sample among the k most likely tokens (``topK``; Anthropic models only).
        stop: stop sequences (``stopSequences``).
    """

    temperature: float | None = None
    max_tokens: int | None = None
    top_p: float | None = None
    top_k: int | None = None
    stop: list[str] = field(default_factory=list)


_GENERATION: contextvars.ContextVar[GenerationParams | None] = contextvars.ContextVar("rag_generation", default=None)


@contextlib.contextmanager
def generation_scope(params: GenerationParams) -> Iterator[None]:
    """Make ``params`` apply to every :class:`GenerationParamsModel` call in this context."""
    token = _GENERATION.set(params)
    try:
        yield
    finally:
        _GENERATION.reset(token)


def current_generation() -> GenerationParams | None:
    """The parameters set by the enclosing :func:`generation_scope`, if any."""
    return _GENERATION.get()


def estimate_tokens(text: str) -> int:
    """Rough token count for models that report none: ~4 characters per token (English text)."""
    return max(1, math.ceil(len(text) / 4)) if text else 0


def _bedrock_kwargs(params: GenerationParams) -> dict[str, Any]:
    kwargs: dict[str, Any] = {}
    if params.temperature is not None:
        kwargs["temperature"] = params.temperature
    if params.max_tokens is not None:
        kwargs["max_tokens"] = params.max_tokens
    if params.top_p is not None:
        kwargs["top_p"] = params.top_p
    if params.top_k is not None:
        # Converse has no topK: Anthropic models take it as an additional request field
        # (https://docs.aws.amazon.com/bedrock/latest/userguide/model-parameters-anthropic-claude-messages.html).
        kwargs["additional_model_request_fields"] = {"top_k": params.top_k}
    return kwargs


class GenerationParamsModel(BaseChatModel):
    """Wraps a chat model and applies the per-request :class:`GenerationParams`.

    For :class:`~langchain_aws.ChatBedrockConverse` the parameters become call arguments
    (``inferenceConfig`` plus ``additionalModelRequestFields.top_k``); for any other model they
    update the fields the model has (``temperature``, ``max_tokens``, ``top_p``, ``top_k``) on a
    shallow per-call copy. Stop sequences are passed as ``stop``. Callback events (tokens, usage)
    are emitted once, under this wrapper's ``name`` (``"condense"`` or ``"answer"``).

    Args:
        inner: the wrapped model (shared: it is never mutated).
        streaming: always call the model's streaming API (tokens reach callbacks as they arrive).
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    inner: BaseChatModel
    streaming: bool = False

    @property
    def _llm_type(self) -> str:
        return f"params:{self.inner._llm_type}"

    def _prepare(self, stop: list[str] | None, kwargs: dict[str, Any]) -> tuple[BaseChatModel, list[str] | None]:
        params = current_generation()
        if params is None:
            return self.inner, stop
        stop = [*(stop or []), *params.stop] or None
        if type(self.inner).__name__ == "ChatBedrockConverse":
            kwargs.update(_bedrock_kwargs(params))
            return self.inner, stop
        fields = type(self.inner).model_fields
        update = {
            name: value
            for name, value in (
                ("temperature", params.temperature),
                ("max_tokens", params.max_tokens),
                ("top_p", params.top_p),
                ("top_k", params.top_k),
            )
            if value is not None and name in fields
        }
        return (self.inner.model_copy(update=update) if update else self.inner), stop

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        model, stop = self._prepare(stop, kwargs)
        return model._generate(messages, stop=stop, **kwargs)

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        model, stop = self._prepare(stop, kwargs)
        return await model._agenerate(messages, stop=stop, **kwargs)

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        model, stop = self._prepare(stop, kwargs)
        yield from model._stream(messages, stop=stop, **kwargs)

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        model, stop = self._prepare(stop, kwargs)
        # BaseChatModel's default _astream runs the sync _stream in a thread (boto3 never blocks the loop).
        async for chunk in model._astream(messages, stop=stop, **kwargs):
            yield chunk


# --------------------------------------------------------------------------------------------
# extractive answerer


def _content_words(text: str) -> set[str]:
    return {w for w in content_words(text) if len(w) > 1}


def _split_sentences(text: str) -> list[str]:
    parts = re.split(r"(?<=[.!?])\s+|\n+", text.strip())
    return [p.strip() for p in parts if p.strip()]


class ExtractiveChatModel(BaseChatModel):
    """An answerer without a generative model: it quotes the best passages of the context.

    It understands the two prompts of :mod:`rag.answer.chain`:

    * the answer prompt (documents in ``<doc n="1" ... title="...">...</doc>`` blocks, then
      ``Question:``): it quotes the document's text without its title line (for a FAQ row: the
      answer, not the question), starting with the sentence of the best (first) document that
      shares the most content words with the question and the sentences after it (a list stays
      with its introduction), then the best sentence of each next document that shares any; each
      quote is cited as ``[n]``, under the label :data:`EXTRACTIVE_LABEL`. The chain gives it only
      the passages above the relevance floor, so weak passages are not quoted;
    * the condense prompt (ends with :data:`CONDENSE_MARKER`): it cannot rewrite, so it returns the
      conversation's topic question followed by the follow-up
      (:func:`rag.answer.followup.offline_condense`; query expansion for retrieval).

    Token usage is estimated (:func:`estimate_tokens`). ``max_tokens`` caps the answer in words.

    Attributes:
        max_passages: how many documents to quote from (best first).
        max_sentences: sentences quoted per document.
        max_tokens: upper bound on the answer's words.
    """

    max_passages: int = Field(default=2, ge=1, le=10)
    max_sentences: int = Field(default=3, ge=1, le=20)
    max_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = None  # accepted and ignored (deterministic)

    @property
    def _llm_type(self) -> str:
        return "extractive"

    def _answer(self, messages: list[BaseMessage], stop: list[str] | None) -> str:
        prompt = "\n".join(str(m.content) for m in messages)
        text = self._condense(prompt) if prompt.rstrip().endswith(CONDENSE_MARKER) else self._extract(prompt)
        if self.max_tokens:
            words = text.split(" ")
            text = " ".join(words[: self.max_tokens])
        for sequence in stop or []:
            if sequence and sequence in text:
                text = text[: text.index(sequence)]
        return text

    @staticmethod
    def _condense(prompt: str) -> str:
        from rag.answer.followup import offline_condense

        body = prompt.rstrip()[: -len(CONDENSE_MARKER)]
        follow_up = ""
        if "Follow-up question:" in body:
            body, follow_up = body.rsplit("Follow-up question:", 1)
        previous = [line.split(":", 1)[1].strip() for line in body.splitlines() if line.startswith("Human:")]
        return offline_condense(follow_up.strip(), previous)

    @staticmethod
    def _answer_text(attrs: str, text: str) -> str:
        """The passage without its title line (a FAQ row's question), when it starts with it."""
        title = _TITLE_RE.search(attrs)
        first, _, rest = text.partition("\n")
        if title and title.group("title").strip() and first.strip() == title.group("title").strip() and rest.strip():
            return rest
        return text

    def _extract(self, prompt: str) -> str:
        docs = [
            (int(m.group("n")), self._answer_text(m.group("attrs"), m.group("text"))) for m in _DOC_RE.finditer(prompt)
        ]
        question = prompt.rsplit(QUESTION_MARKER, 1)[-1].split("\n")[0] if QUESTION_MARKER in prompt else prompt
        if not docs:
            return f"{EXTRACTIVE_LABEL} no matching passage was found in the documents."
        wanted = _content_words(question)
        parts = []
        for position, (number, text) in enumerate(docs[: self.max_passages]):
            sentences = _split_sentences(text)
            if not sentences:
                continue
            overlaps = [len(_content_words(sentence) & wanted) for sentence in sentences]
            best = max(range(len(sentences)), key=lambda i: (overlaps[i], -i))
            if position == 0:
                passage = " ".join(sentences[best : best + self.max_sentences])
            elif overlaps[best] > 0:
                passage = sentences[best]
            else:
                continue
            parts.append(f"{passage} [{number}]")
        return f"{EXTRACTIVE_LABEL} " + " ".join(parts)

    def _usage(self, messages: list[BaseMessage], text: str) -> UsageMetadata:
        prompt_tokens = sum(estimate_tokens(str(m.content)) for m in messages)
        output_tokens = estimate_tokens(text)
        return UsageMetadata(
            input_tokens=prompt_tokens, output_tokens=output_tokens, total_tokens=prompt_tokens + output_tokens
        )

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        text = self._answer(messages, stop)
        message = AIMessage(content=text, usage_metadata=self._usage(messages, text))
        return ChatResult(generations=[ChatGeneration(message=message)])

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        text = self._answer(messages, stop)
        for piece in re.findall(r"\S+\s*|\s+", text):
            yield ChatGenerationChunk(message=AIMessageChunk(content=piece))
        yield ChatGenerationChunk(message=AIMessageChunk(content="", usage_metadata=self._usage(messages, text)))

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        for chunk in self._stream(messages, stop=stop, **kwargs):  # pure CPU, microseconds
            yield chunk


# --------------------------------------------------------------------------------------------
# factory


def model_id_of(settings: Settings) -> str:
    """The model id the API reports: the Bedrock model id, ``extractive`` or the factory path."""
    if settings.llm_provider == "bedrock":
        return settings.text2text_model_id
    return settings.llm_provider


def make_chat_model(settings: Settings, *, bedrock_client: Any = None) -> BaseChatModel:
    """Build the chat model ``LLM_PROVIDER`` names.

    Args:
        settings: ``LLM_PROVIDER``, ``TEXT2TEXT_MODEL_ID``, region and timeouts.
        bedrock_client: a ``bedrock-runtime`` client (tests); from :func:`rag.aws.make_client` if None.

    Returns:
        A LangChain chat model that supports streaming.

    Raises:
        ValueError: the plug-in factory cannot be imported or returns something else.
    """
    provider = settings.llm_provider
    if provider == "extractive":
        return ExtractiveChatModel()
    if provider == "bedrock":
        from langchain_aws import ChatBedrockConverse

        from rag.aws import make_client

        client = bedrock_client or make_client(settings.bedrock_service, settings)
        return ChatBedrockConverse(
            client=client,
            model=settings.text2text_model_id,
            region_name=settings.aws_default_region,
            temperature=0.1,
            max_tokens=512,
        )
    module_name, _, attr = provider.partition(":")
    try:
        factory: Callable[[Settings], Any] = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"LLM_PROVIDER: cannot import {provider!r}: {exc}") from exc
    model = factory(settings)
    if not isinstance(model, BaseChatModel):
        raise ValueError(f"LLM_PROVIDER: {provider!r} returned {type(model).__name__}, not a BaseChatModel")
    return model
