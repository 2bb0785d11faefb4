"""Property-based and schema-driven fuzzing (hypothesis, schemathesis); no network."""
