"""rag.answer.chain: the chain runs in one worker thread and its tokens reach the loop.

Tokens spaced in time arrive as separate events; tokens that pile up while the loop is busy arrive
together (never lost, never reordered); closing the stream stops the chain at its next step or
token; the per-request values (k, generation parameters) are call arguments; the condense and
no-answer hooks decide which model calls happen.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time

import pytest
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever

from rag.answer.chain import (
    AnswerChain,
    ChainCancelledError,
    ChainResult,
    FinalEvent,
    FlushClock,
    TokenEvent,
    TokenRelay,
    astream_chain,
)
from rag.answer.models import GenerationParams
from tests.unit.api.fakes import ScriptedChatModel


class _TwoDocs(BaseRetriever):
    def _get_relevant_documents(self, query: str, *, run_manager: object) -> list[Document]:
        return [Document("Studio is an IDE.", metadata={"id": "a"}), Document("EMR runs Spark.", metadata={"id": "b"})]


async def _collect(chain, question: str, history=()) -> tuple[list[str], ChainResult]:
    texts: list[str] = []
    final = None
    async for event in astream_chain(chain, question, list(history)):
        if isinstance(event, TokenEvent):
            texts.append(event.text)
        else:
            assert isinstance(event, FinalEvent)
            final = event.result
    assert final is not None
    return texts, final


def test_spaced_tokens_are_separate_events_and_the_final_event_has_docs_and_usage():
    model = ScriptedChatModel(replies=["one two three four five"], token_delay=0.1)
    texts, final = asyncio.run(_collect(AnswerChain(retriever=_TwoDocs(), llm=model), "q?"))
    assert "".join(texts) == "one two three four five" and texts[0] == "one"
    assert len(texts) >= 3  # 100 ms apart: separate unless this machine stalls for 100 ms
    assert final.answer == "one two three four five"
    assert [d.metadata["id"] for d in final.documents] == ["a", "b"]
    assert final.usage.input_tokens == 10 and final.usage.output_tokens == 3


def test_tokens_that_pile_up_while_the_loop_is_busy_arrive_together_in_order():
    async def run() -> list[str | None]:
        relay = TokenRelay(asyncio.get_running_loop())
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
        relay = TokenRelay(loop, flush_seconds=0.5)
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


def test_streams_on_one_flush_clock_flush_together_and_the_clock_stops_when_idle():
    async def run() -> tuple[list[list[object]], list[float], bool, bool]:
        loop = asyncio.get_running_loop()
        clock = FlushClock(loop, flush_seconds=0.05)
        relays = [TokenRelay(loop, clock=clock) for _ in range(8)]
        for n, relay in enumerate(relays):
            relay.put(f"first{n}")  # each stream's first token: at once, not on the clock
        firsts = [await relay.queue.get() for relay in relays]
        ticks: list[float] = []
        original_tick = clock._tick

        def counting_tick() -> None:
            ticks.append(loop.time())
            original_tick()

        clock._tick = counting_tick  # type: ignore[method-assign]
        threads = [threading.Thread(target=lambda r=r: [r.put(w) for w in ("x", "y", "z")]) for r in relays]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        seconds = [await relay.queue.get() for relay in relays]  # all eight: one tick
        got_at = loop.time()
        while clock._running:  # the next tick finds nothing due and stops the clock
            await asyncio.sleep(0.01)
        stopped = not clock._running
        relays[0].put("again")  # text on a stopped clock starts it again
        third = await relays[0].queue.get()
        running_before_close = clock._running  # "again" re-armed it: its next tick may find more
        for relay in relays:
            relay.close()  # the last stream to end stops the clock: no idle tick after the answers
        stopped_at_end = not clock._running and clock._timer is None
        return [firsts, seconds, [third]], [got_at, *ticks], stopped and running_before_close, not stopped_at_end

    (firsts, seconds, third), (got_at, *ticks), stopped, running_after = asyncio.run(asyncio.wait_for(run(), 10))
    assert firsts == [f"first{n}" for n in range(8)]
    assert seconds == ["xyz"] * 8  # every stream's pending text, each joined into one piece
    assert third == ["again"]
    # one tick delivered all eight streams (a timer per stream would have fired eight times)
    assert len([t for t in ticks if t <= got_at]) == 1
    assert stopped  # the clock does not tick while no text waits, and text starts it again
    assert not running_after


def test_a_flush_clock_needs_an_interval():
    async def run() -> None:
        FlushClock(asyncio.get_running_loop(), flush_seconds=0)

    with pytest.raises(ValueError, match="flush_seconds must be > 0"):
        asyncio.run(run())


def test_the_condense_call_streams_no_tokens_but_counts_usage():
    model = ScriptedChatModel(replies=["Studio what?", "It is an IDE."])
    texts, final = asyncio.run(
        _collect(AnswerChain(retriever=_TwoDocs(), llm=model), "what is it?", [("What is Studio?", "An IDE.")])
    )
    assert "".join(texts) == "It is an IDE."  # the condensed question is not part of the answer
    assert final.generated_question == "Studio what?"
    assert final.usage.input_tokens == 20  # both calls


def test_closing_the_stream_stops_the_chain_at_its_next_token():
    gate = threading.Event()
    model = ScriptedChatModel(replies=["one two three four"], gate=gate)
    chain = AnswerChain(retriever=_TwoDocs(), llm=model)
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

    chain = AnswerChain(retriever=Recording(), llm=ScriptedChatModel(), condense_llm=Gated())

    async def run() -> None:
        stream = astream_chain(chain, "and the price?", [("What is Studio?", "An IDE.")])
        step = asyncio.ensure_future(anext(stream))
        await asyncio.to_thread(reached.wait, 10)
        step.cancel()  # the client goes away
        with contextlib.suppress(asyncio.CancelledError):
            await step
        await stream.aclose()
        released.set()

    asyncio.run(run())  # returns once the chain's thread has finished
    assert searched == []


def test_a_cancelled_run_makes_no_retrieval_and_no_model_call():
    searched: list[str] = []

    class Recording(_TwoDocs):
        def _get_relevant_documents(self, query, *, run_manager):
            searched.append(query)
            return super()._get_relevant_documents(query, run_manager=run_manager)

    model = ScriptedChatModel()
    cancelled = threading.Event()
    cancelled.set()
    chain = AnswerChain(retriever=Recording(), llm=model)
    with pytest.raises(ChainCancelledError):
        chain.run("q?", [("What is Studio?", "An IDE.")], cancelled=cancelled)
    assert searched == [] and model.calls == []


def test_k_and_generation_parameters_are_call_arguments_and_the_shared_model_is_not_copied():
    seen: list[dict] = []

    class KRetriever(BaseRetriever):
        def _get_relevant_documents(self, query, *, run_manager, k=None, stats=None):
            seen.append({"k": k})
            return [Document(f"doc {n}", metadata={"id": str(n)}) for n in range(k or 1)]

    model = ScriptedChatModel(replies=["ok"])
    chain = AnswerChain(retriever=KRetriever(), llm=model)
    params = GenerationParams(temperature=0.7, max_tokens=99, top_p=0.5, top_k=40, stop=["END"])
    result = chain.run("q?", k=4, generation=params)
    assert seen == [{"k": 4}] and len(result.documents) == 4
    call = model.calls[-1]
    assert call["kwargs"] == {"temperature": 0.7, "max_tokens": 99, "top_p": 0.5, "top_k": 40}
    assert call["stop"] == ["END"]
    assert model.temperature is None  # the shared model itself is untouched


def test_needs_condense_false_skips_the_condense_call():
    model = ScriptedChatModel(replies=["It is an IDE."])
    chain = AnswerChain(retriever=_TwoDocs(), llm=model, needs_condense=lambda question, history: False)
    result = chain.run("What is SageMaker Studio?", [("What is EMR?", "Spark on EC2.")])
    assert len(model.calls) == 1 and "Standalone question:" not in model.calls[0]["prompt"]
    assert result.generated_question == "What is SageMaker Studio?"


def test_the_no_answer_hook_answers_without_a_model_call():
    model = ScriptedChatModel()
    got: list[tuple[str, list[str]]] = []

    def no_answer(question, docs):
        got.append((question, [d.metadata["id"] for d in docs]))
        return "The documents do not cover this."

    chain = AnswerChain(retriever=_TwoDocs(), llm=model, no_answer=no_answer)
    tokens: list[str] = []
    result = chain.run("q?", on_token=tokens.append)
    assert model.calls == []
    assert got == [("q?", ["a", "b"])]
    assert (result.answer, result.grounded, result.documents) == ("The documents do not cover this.", False, [])
    assert tokens == ["The documents do not cover this."]
