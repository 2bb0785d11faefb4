"""The answer path: retrieval (dense, hybrid, rerank), the conversational chain, chat models
(Bedrock wrapper, extractive answerer) and the spans the path emits.

Used only by the RAG API and the evaluation command; builds on ``rag.index`` for the index it
searches.
"""
