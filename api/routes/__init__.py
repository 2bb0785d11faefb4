"""HTTP routes by area: ``rag`` (answers), ``sessions`` (history), ``health`` (probes, metrics)."""
