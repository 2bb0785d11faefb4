"""What the API's processes import at start: the memory decisions of docs/api.md "Workers and memory".

Each check runs a fresh interpreter (no server, no network) and lists the modules it holds after the
import, so a top-level import that pulls one of these packages back in fails here rather than as a
few MiB more in the next benchmark.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]


def _modules_after(code: str) -> set[str]:
    probe = f"{code}\nimport json, sys\nprint(json.dumps(sorted(m.split('.')[0] for m in sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, check=True, timeout=120
    )
    return set(json.loads(out.stdout.splitlines()[-1]))


def test_the_worker_app_holds_no_bm25_scipy_or_jwt_until_it_needs_them() -> None:
    modules = _modules_after("import api.main")
    assert "fastapi" in modules and "faiss" in modules  # the probe did import the app
    # bm25s/scipy: only a hybrid search builds BM25 (rag.answer.retrieval.TenantIndex.bm25);
    # PyJWT/cryptography: only an admin request verifies a token (rag.identity).
    assert modules.isdisjoint({"bm25s", "scipy", "jwt", "cryptography"}), modules & {
        "bm25s",
        "scipy",
        "jwt",
        "cryptography",
    }


def test_the_gunicorn_config_imports_no_pydantic() -> None:
    modules = _modules_after("import runpy; runpy.run_path('api/gunicorn.conf.py')")
    assert "rag" in modules  # it read rag.serving
    assert modules.isdisjoint({"pydantic", "pydantic_settings", "pydantic_core"})
