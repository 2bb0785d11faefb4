"""rag.answer.chain.astream_chain: the chain runs in one worker thread and its tokens reach the loop.

Tokens spaced in time arrive as separate events; tokens that pile up while the loop is busy arrive
together (never lost, never reordered); closing the stream stops the chain at its next callback.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
import uuid

import pytest
from langchain_core.documents import Document
from langchain_core.messages import HumanMessage
from langchain_core.retrievers import BaseRetriever

from rag.answer.chain import (
    ANSWER_TAG,
    ChainCancelledError,
    FinalEvent,
    TokenEvent,
    _TokenCollector,
    _TokenRelay,
    astream_chain,
    build_chain,
    history_messages,
)
from tests.unit.api.fakes import ScriptedChatModel


class _TwoDocs(BaseRetriever):
    def _get_relevant_documents(self, query: str, *, run_manager: object) -> list[Document]:
        return [Document("Studio is an IDE.", metadata={"id": "a"}), Document("EMR runs Spark.", metadata={"id": "b"})]


async def _collect(chain, question: str, history=()) -> tuple[list[str], FinalEvent]:
    texts: list[str] = []
    final = None
    async for event in astream_chain(chain, question, history_messages(list(history))):
        if isinstance(event, TokenEvent):
            texts.append(event.text)
        else:
            final = event
    assert final is not None
    return texts, final


def test_spaced_tokens_are_separate_events_and_the_final_event_has_docs_and_usage():
    model = ScriptedChatModel(replies=["one two three four five"], token_delay=0.1)
    texts, final = asyncio.run(_collect(build_chain(retriever=_TwoDocs(), llm=model), "q?"))
    assert "".join(texts) == "one two three four five" and texts[0] == "one"
    assert len(texts) >= 3  # 100 ms apart: separate unless this machine stalls for 100 ms
    assert final.answer == "one two three four five"
    assert [d.metadata["id"] for d in final.documents] == ["a", "b"]
    assert final.usage.input_tokens == 10 and final.usage.output_tokens == 3


def test_tokens_that_pile_up_while_the_loop_is_busy_arrive_together_in_order():
    async def run() -> list[str | None]:
        relay = _TokenRelay(asyncio.get_running_loop())
        producer = threading.Thread(target=lambda: [relay.put(w) for w in ("a", "b", "c")])
        producer.start()
        producer.join()  # the loop has not run: all three wait for one wake-up
        await asyncio.sleep(0)
        relay.put("d")  # the loop is free again: on its own
        await asyncio.sleep(0)
        relay.close()
        return [relay.queue.get_nowait() for _ in range(relay.queue.qsize())]

    assert asyncio.run(run()) == ["abc", "d", None]


def test_after_the_first_token_pieces_are_sent_at_most_every_flush_interval():
    async def run() -> list[tuple[str | None, float]]:
        loop = asyncio.get_running_loop()
        relay = _TokenRelay(loop, flush_seconds=0.5)
        started = loop.time()
        got: list[tuple[str | None, float]] = []

        async def take() -> None:
            got.append((await relay.queue.get(), loop.time() - started))

        relay.put("a")  # the first token: at once
        await take()
        threading.Thread(target=lambda: [relay.put(w) for w in ("b", "c")]).start()
        await take()  # b and c together, once 0.5 s have passed since "a"
        relay.put("d")
        await asyncio.sleep(0.01)
        relay.close()  # the end flushes at once, without waiting for the interval
        await take()
        await take()
        return got

    (a, t_a), (bc, t_bc), (d, t_d), (end, _) = asyncio.run(run())
    assert (a, bc, d, end) == ("a", "bc", "d", None)
    assert t_a < 0.4 and t_bc >= 0.49 and t_d - t_bc < 0.4


def test_the_condense_call_streams_no_tokens_but_counts_usage():
    model = ScriptedChatModel(replies=["Studio what?", "It is an IDE."])
    texts, final = asyncio.run(
        _collect(build_chain(retriever=_TwoDocs(), llm=model), "what is it?", [("What is Studio?", "An IDE.")])
    )
    assert "".join(texts) == "It is an IDE."  # the condensed question is not part of the answer
    assert final.generated_question == "Studio what?"
    assert final.usage.input_tokens == 20  # both calls


def test_closing_the_stream_stops_the_chain_at_its_next_token():
    gate = threading.Event()
    model = ScriptedChatModel(replies=["one two three four"], gate=gate)
    chain = build_chain(retriever=_TwoDocs(), llm=model)
    produced: list[str] = []

    async def run() -> None:
        stream = astream_chain(chain, "q?", [])
        first = await anext(stream)
        assert isinstance(first, TokenEvent) and first.text == "one"
        await stream.aclose()  # the client went away while the model waits after its first token
        gate.set()

    def spy_stream(messages, stop=None, run_manager=None, **kwargs):
        for chunk in ScriptedChatModel._stream(model, messages, stop, run_manager, **kwargs):
            produced.append(chunk.message.content)
            yield chunk

    object.__setattr__(model, "_stream", spy_stream)
    asyncio.run(run())
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and len(produced) < 2:
        time.sleep(0.01)
    time.sleep(0.1)
    # the model yielded its second token, the callback refused it, and the stream was closed
    assert produced == ["one", " two"]


def test_a_client_that_leaves_during_the_condense_call_causes_no_retrieval():
    from langchain_core.language_models.chat_models import BaseChatModel, generate_from_stream
    from langchain_core.messages import AIMessageChunk
    from langchain_core.outputs import ChatGenerationChunk

    released, reached = threading.Event(), threading.Event()
    searched: list[str] = []

    class Gated(BaseChatModel):
        @property
        def _llm_type(self) -> str:
            return "gated"

        def _generate(self, messages, stop=None, run_manager=None, **kwargs):
            return generate_from_stream(self._stream(messages, stop, run_manager, **kwargs))

        def _stream(self, messages, stop=None, run_manager=None, **kwargs):
            yield ChatGenerationChunk(message=AIMessageChunk(content="standalone?"))
            reached.set()
            released.wait(10)  # the condensed question is complete; retrieval would be next

    class Recording(_TwoDocs):
        def _get_relevant_documents(self, query, *, run_manager):
            searched.append(query)
            return super()._get_relevant_documents(query, run_manager=run_manager)

    chain = build_chain(retriever=Recording(), llm=ScriptedChatModel(), condense_llm=Gated())

    async def run() -> None:
        stream = astream_chain(chain, "and the price?", history_messages([("What is Studio?", "An IDE.")]))
        step = asyncio.ensure_future(anext(stream))
        await asyncio.to_thread(reached.wait, 10)
        step.cancel()  # the client goes away
        with contextlib.suppress(asyncio.CancelledError):
            await step
        await stream.aclose()
        released.set()

    asyncio.run(run())  # returns once the chain's thread has finished
    assert searched == []


def test_once_cancelled_every_retriever_or_model_start_and_token_stops_the_chain():
    cancelled = threading.Event()
    collector = _TokenCollector(_TokenRelay(asyncio.new_event_loop()), cancelled)
    run = uuid.uuid4()
    collector.on_retriever_start({}, "q")
    collector.on_chat_model_start({}, [[HumanMessage("hi")]], run_id=run)
    cancelled.set()
    for call in (
        lambda: collector.on_retriever_start({}, "q"),
        lambda: collector.on_chat_model_start({}, [[HumanMessage("hi")]], run_id=run),
        lambda: collector.on_llm_new_token("x", run_id=run, tags=[ANSWER_TAG]),
    ):
        with pytest.raises(ChainCancelledError):
            call()
