"""``rag``: the operator's command line (ask, load, status, reset). See :mod:`cli.main`."""
