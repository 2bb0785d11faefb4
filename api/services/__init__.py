"""Application services of the RAG API: the work behind the routes (the routes only adapt HTTP to them)."""
