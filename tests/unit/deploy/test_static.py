"""Dockerfiles and deploy scripts: linters and the conventions of the project."""

from __future__ import annotations

import re
import subprocess

from .conftest import REPO_ROOT, SCRIPTS, tool

DOCKERFILES = ("Dockerfile.chatbot", "Dockerfile.ragapi")
SCRIPT_FILES = sorted(SCRIPTS.glob("*.sh"))
ENTRY_SCRIPTS = [p for p in SCRIPT_FILES if p.name != "lib.sh"]


def test_hadolint_clean() -> None:
    proc = subprocess.run(
        [tool("hadolint"), "--no-color", *(str(REPO_ROOT / d) for d in DOCKERFILES)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_dockerfiles_follow_the_contract() -> None:
    for name in DOCKERFILES:
        text = (REPO_ROOT / name).read_text()
        assert re.search(r"^ARG PYTHON_IMAGE=python:3\.11\.\d+-slim-bookworm$", text, re.M), name
        assert len(re.findall(r"^FROM ", text, re.M)) >= 2, f"{name}: multi-stage"
        assert re.search(r"^USER 10001:10001$", text, re.M), name
        assert "1337" not in text.replace("UID 1337", "")
        entry = re.findall(r"^ENTRYPOINT (.*)$", text, re.M)
        assert len(entry) == 1 and entry[0].startswith('["'), f"{name}: exec-form ENTRYPOINT"
    ragapi = (REPO_ROOT / "Dockerfile.ragapi").read_text()
    assert 'ENTRYPOINT ["gunicorn", "-c", "api/gunicorn.conf.py", "api.main:app"]' in ragapi
    assert '"./[ragapi,otel]"' in ragapi and "[local]" not in ragapi and "sentence-transformers" not in ragapi
    chatbot = (REPO_ROOT / "Dockerfile.chatbot").read_text()
    assert (
        'ENTRYPOINT ["python", "-m", "webapp.server"' in chatbot
        and "COPY .streamlit/ .streamlit/" in chatbot
        and '"./[webapp]"' in chatbot
    )


def test_dockerignore_allowlist() -> None:
    lines = (REPO_ROOT / ".dockerignore").read_text().splitlines()
    assert "**" in lines, "deny everything, then allow what the images copy (keeps .venv, .git, tests out)"
    assert not any(line.startswith("!") and (".venv" in line or "tests" in line or ".git" in line) for line in lines)


def test_shellcheck_clean() -> None:
    proc = subprocess.run(
        [tool("shellcheck"), "--severity=style", *map(str, SCRIPT_FILES)],
        capture_output=True,
        text=True,
        check=False,
        cwd=SCRIPTS,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_script_conventions() -> None:
    for path in ENTRY_SCRIPTS:
        text = path.read_text()
        assert text.startswith("#!/usr/bin/env bash\n"), path.name
        assert "\nset -Eeuo pipefail\n" in text, path.name
        assert 'source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"' in text, path.name
        assert re.search(r"^usage\(\) \{\n  cat >&2", text, re.M), f"{path.name}: usage() to stderr"
        assert text.rstrip().endswith('main "$@"'), path.name
        assert "--dry-run" in text, path.name
        assert path.stat().st_mode & 0o111, f"{path.name} is not executable"
    lib = (SCRIPTS / "lib.sh").read_text()
    assert "trap cleanup EXIT" in lib and "trap 'on_error" in lib
    assert "readonly TENANT_RE='^[a-z][a-z0-9-]{1,30}[a-z0-9]$'" in lib


def test_scripts_hard_code_nothing_cluster_specific_and_never_create() -> None:
    for path in SCRIPT_FILES:
        for n, line in enumerate(path.read_text().splitlines(), 1):
            code = line.split(" #", 1)[0]
            if code.lstrip().startswith("#"):
                continue
            assert not re.search(r"\b\d{12}\b|arn:aws:", code), f"{path.name}:{n}: {line}"
            if re.search(r"\bkubectl create\b", code):
                assert "--dry-run=client -o yaml | kubectl apply -f -" in code, f"{path.name}:{n}: {line}"
    # every envsubst call gets the explicit variable list
    calls = [line for p in SCRIPT_FILES for line in p.read_text().splitlines() if re.search(r"^\s*envsubst\b", line)]
    assert calls and all(re.match(r'\s*envsubst "\$\{format\}"', c) for c in calls), calls
