"""Chat model factory: Claude on Bedrock (production), an extractive answerer (offline), or a plug-in.

``LLM_PROVIDER`` chooses:

* ``bedrock`` — :class:`langchain_aws.ChatBedrockConverse` over the Converse / ConverseStream API
  (https://docs.aws.amazon.com/bedrock/latest/APIReference/API_runtime_ConverseStream.html), its
  boto3 client from :func:`rag.aws.make_client`;
* ``extractive`` — :class:`ExtractiveChatModel`, no generative model at all: it answers with the
  best retrieved passages, labelled as such, with citations, and streams them word by word;
* ``module.path:factory`` — ``factory(settings)`` returns any LangChain ``BaseChatModel``.

Per-request generation parameters (the API's ``temperature``, ``maxTokenCount``, ``topP``,
``topK``, ``stopSequences``) are call arguments of the shared model (:func:`generation_kwargs_for`).
"""

from __future__ import annotations

import abc
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
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult, LLMResult
from langchain_core.runnables import RunnableConfig
from pydantic import Field

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

    def bounded(self, max_tokens: int) -> GenerationParams:
        """The same parameters with at most ``max_tokens`` output tokens."""
        limit = max_tokens if self.max_tokens is None else min(self.max_tokens, max_tokens)
        return GenerationParams(self.temperature, limit, self.top_p, self.top_k, list(self.stop))


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


_PARAM_NAMES = ("temperature", "max_tokens", "top_p", "top_k")


def _is_bedrock_converse(model: BaseChatModel) -> bool:
    try:
        from langchain_aws import ChatBedrockConverse
    except ImportError:  # pragma: no cover - langchain-aws is part of the ragapi extra
        return False
    return isinstance(model, ChatBedrockConverse)


def generation_kwargs_for(model: BaseChatModel) -> Callable[[GenerationParams], dict[str, Any]]:
    """How :class:`GenerationParams` become call arguments of ``model`` (decided once, when the chain is built).

    LangChain chat models take per-call parameters as keyword arguments of ``invoke``/``stream``
    (they reach ``_generate``/``_stream``; the same mechanism as ``model.bind(...)``), so one shared
    model object serves every request without copies:

    * :class:`~langchain_aws.ChatBedrockConverse`: ``temperature``, ``max_tokens``, ``top_p`` become
      Converse's ``inferenceConfig``; ``top_k`` goes into ``additional_model_request_fields``
      (https://docs.aws.amazon.com/bedrock/latest/APIReference/API_runtime_ConverseStream.html);
    * any other model: those of ``temperature``, ``max_tokens``, ``top_p``, ``top_k`` that the model
      declares as fields (a model that has no ``top_k`` never receives one).

    Stop sequences are the separate ``stop`` argument.

    Args:
        model: the chat model the parameters are for.

    Returns:
        ``params -> kwargs`` (only parameters that are set).
    """
    if _is_bedrock_converse(model):
        return _bedrock_kwargs
    names = tuple(name for name in _PARAM_NAMES if name in type(model).model_fields)

    def kwargs(params: GenerationParams) -> dict[str, Any]:
        return {name: value for name in names if (value := getattr(params, name)) is not None}

    return kwargs


class TextStream(abc.ABC):
    """A model's streamed answer as plain text pieces, with the usage the model reported at the end.

    Iterate it for the pieces; afterwards :attr:`usage` is ``(input_tokens, output_tokens)`` or None
    when the model reported none. :meth:`close` ends the model's stream early (client disconnect).
    """

    usage: tuple[int, int] | None = None

    @abc.abstractmethod
    def __iter__(self) -> Iterator[str]:
        """Yield the answer's text pieces as the model sends them."""

    def close(self) -> None:  # noqa: B027 - optional hook: streams with nothing to release keep it
        """Stop reading the model's stream (a no-op unless the stream holds a connection)."""


class LangChainTextStream(TextStream):
    """Any LangChain chat model through ``model.stream`` (one chunk object and callback per token).

    Args:
        model: the chat model.
        messages: the prompt.
        config: the LangChain run config (callbacks, tags, run name).
        stop: stop sequences, or None.
        kwargs: generation parameters (:func:`generation_kwargs_for`).
    """

    def __init__(
        self,
        model: BaseChatModel,
        messages: list[BaseMessage],
        config: RunnableConfig,
        stop: list[str] | None,
        kwargs: dict[str, Any],
    ) -> None:
        self._chunks = model.stream(messages, config, stop=stop, **kwargs)

    def __iter__(self) -> Iterator[str]:
        for chunk in self._chunks:
            if chunk.usage_metadata:
                got = (
                    int(chunk.usage_metadata.get("input_tokens", 0)),
                    int(chunk.usage_metadata.get("output_tokens", 0)),
                )
                self.usage = got if self.usage is None else (self.usage[0] + got[0], self.usage[1] + got[1])
            text = chunk.text
            if text:
                yield text

    def close(self) -> None:
        """Close the model's generator (and with it, e.g., the HTTP stream)."""
        self._chunks.close()


class ConverseTextStream(TextStream):
    """Bedrock ConverseStream read directly: text deltas as ``str``, no LangChain chunk per token.

    The request is the one :class:`~langchain_aws.ChatBedrockConverse` itself sends (its own message
    conversion and ``_converse_params``, so model defaults, guardrails and additional fields apply
    the same way); the response's ``contentBlockDelta`` texts are relayed as they come and the
    ``metadata`` event's usage is kept. LangChain sees one chat-model run (start and end, with the
    complete message and usage), not one callback per token: ``langchain_aws`` creates a message
    chunk, a generation chunk and a callback for every delta, about a quarter of a worker's CPU per
    streamed answer in ``benchmarks/api_bench.py``'s profile. Events and errors:
    https://docs.aws.amazon.com/bedrock/latest/APIReference/API_runtime_ConverseStream.html.

    Args:
        model: an unmodified ``ChatBedrockConverse`` (see :func:`direct_stream_supported`).
        messages: the prompt.
        config: the LangChain run config (callbacks, tags, metadata, run name).
        stop: stop sequences, or None.
        kwargs: generation parameters (:func:`generation_kwargs_for`).

    Raises:
        botocore.exceptions.ClientError: Bedrock refused the call or failed mid-stream.
        ConnectionError: the stream ended without ``messageStop``.
    """

    def __init__(
        self,
        model: Any,
        messages: list[BaseMessage],
        config: RunnableConfig,
        stop: list[str] | None,
        kwargs: dict[str, Any],
    ) -> None:
        from langchain_aws.chat_models.bedrock_converse import _messages_to_bedrock, _snake_to_camel_keys
        from langchain_core.callbacks import CallbackManager

        manager = CallbackManager.configure(
            config.get("callbacks"), inheritable_tags=config.get("tags"), inheritable_metadata=config.get("metadata")
        )
        self._run = manager.on_chat_model_start(
            None, [messages], invocation_params={"stop": stop, **kwargs}, name=config.get("run_name"), batch_size=1
        )[0]
        try:
            bedrock_messages, system = _messages_to_bedrock(
                messages, model.system, model_id=model._get_base_model(), provider=model.provider
            )
            extra = dict(kwargs)
            additional = extra.pop("additional_model_request_fields", None)
            params = model._converse_params(
                stop=stop, additionalModelRequestFields=additional, **_snake_to_camel_keys(extra)
            )
            self._stream = model.client.converse_stream(messages=bedrock_messages, system=system, **params)["stream"]
        except BaseException as exc:
            self._run.on_llm_error(exc)
            raise
        self._pieces: list[str] = []

    def __iter__(self) -> Iterator[str]:
        stopped = False
        try:
            for event in self._stream:
                delta = event.get("contentBlockDelta")
                if delta is not None:
                    text = delta["delta"].get("text")
                    if text:
                        self._pieces.append(text)
                        yield text
                elif "metadata" in event:
                    usage = event["metadata"].get("usage") or {}
                    self.usage = (int(usage.get("inputTokens", 0)), int(usage.get("outputTokens", 0)))
                elif "messageStop" in event:
                    stopped = True
            if not stopped:
                raise ConnectionError("Incomplete Bedrock response stream: missing messageStop event.")
        except BaseException as exc:
            self._run.on_llm_error(exc)
            raise
        text = "".join(self._pieces)
        meta = None
        if self.usage is not None:
            meta = UsageMetadata(input_tokens=self.usage[0], output_tokens=self.usage[1], total_tokens=sum(self.usage))
        self._run.on_llm_end(LLMResult(generations=[[ChatGeneration(message=AIMessage(text, usage_metadata=meta))]]))

    def close(self) -> None:
        """Close the HTTP stream (the model stops being read)."""
        self._stream.close()


def direct_stream_supported(model: BaseChatModel) -> bool:
    """True for a plain :class:`~langchain_aws.ChatBedrockConverse` (not a subclass that overrides
    ``_stream``; no ``raw_blocks`` or ``guard_last_turn_only``): its answers can be read with
    :class:`ConverseTextStream`."""
    if not _is_bedrock_converse(model):
        return False
    from langchain_aws import ChatBedrockConverse

    return (
        type(model)._stream is ChatBedrockConverse._stream
        and getattr(model, "raw_blocks", None) is None
        and not getattr(model, "guard_last_turn_only", False)
    )


def text_stream_for(model: BaseChatModel) -> type[TextStream]:
    """The :class:`TextStream` class to read ``model``'s answers with (decided once, when the chain is built)."""
    return ConverseTextStream if direct_stream_supported(model) else LangChainTextStream


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

    Token usage is estimated (:func:`estimate_tokens`). ``max_tokens`` (the field, or the call
    argument of the same name, which wins) caps the answer in words.

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

    def _answer(self, messages: list[BaseMessage], stop: list[str] | None, max_tokens: int | None = None) -> str:
        prompt = "\n".join(str(m.content) for m in messages)
        text = self._condense(prompt) if prompt.rstrip().endswith(CONDENSE_MARKER) else self._extract(prompt)
        limit = max_tokens or self.max_tokens
        if limit:
            words = text.split(" ")
            text = " ".join(words[:limit])
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
        text = self._answer(messages, stop, kwargs.get("max_tokens"))
        message = AIMessage(content=text, usage_metadata=self._usage(messages, text))
        return ChatResult(generations=[ChatGeneration(message=message)])

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        text = self._answer(messages, stop, kwargs.get("max_tokens"))
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


def make_chat_model(settings: Settings, *, bedrock_client: Any = None, model_id: str | None = None) -> BaseChatModel:
    """Build the chat model ``LLM_PROVIDER`` names.

    Args:
        settings: ``LLM_PROVIDER``, ``TEXT2TEXT_MODEL_ID``, region and timeouts.
        bedrock_client: a ``bedrock-runtime`` client (tests); from :func:`rag.aws.make_client` if None.
        model_id: another Bedrock model id than ``TEXT2TEXT_MODEL_ID`` (e.g. ``CONDENSE_MODEL_ID``).

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
            model=model_id or settings.text2text_model_id,
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
