"""``python -m devstack``: the local demo (``make demo``). Ctrl-C stops everything."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from pathlib import Path

from devstack.stack import DEMO_CORPORA, REPO_ROOT, DemoStack


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    """Start the demo stack, print one URL per tenant, run until interrupted."""
    parser = argparse.ArgumentParser(prog="python -m devstack", description=__doc__)
    parser.add_argument("--workdir", type=Path, default=REPO_ROOT / ".demo")
    parser.add_argument("--tenants", nargs="+", default=list(DEMO_CORPORA), help="tenant ids to start")
    parser.add_argument(
        "--documents",
        type=Path,
        help="a folder (or file) of your own documents (CSV, PDF, TXT, MD, HTML) for the tenants that have no "
        "demo corpus, e.g. --tenants mydocs --documents ~/papers",
    )
    parser.add_argument(
        "--base-port",
        type=int,
        default=int(os.environ.get("DEMO_BASE_PORT", "8501")),
        help="web chats listen on BASE, BASE+1, ...; their APIs on BASE+100, BASE+101, ... (default 8501)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    log = logging.getLogger("devstack")
    documents = {t: args.documents for t in args.tenants if t not in DEMO_CORPORA} if args.documents else {}
    stack = DemoStack(workdir=args.workdir, tenants=tuple(args.tenants), base_port=args.base_port, documents=documents)
    env = stack.base_env(args.tenants[0])
    log.info(
        "providers: embeddings=%s llm=%s history=%s auth=%s retriever=%s vector store=%s",
        env["EMBEDDINGS_PROVIDER"], env["LLM_PROVIDER"], env["HISTORY_URL"].split(":")[0] if
        env.get("HISTORY_URL") else "dynamodb", env["AUTH_MODE"], env["RETRIEVER_MODE"], stack.vector_store,
    )  # fmt: skip
    for signum in (signal.SIGINT, signal.SIGTERM):  # also when started with SIGINT ignored (background)
        signal.signal(signum, _interrupt)
    try:
        stack.start()  # stops what it started on any error, Ctrl-C included
    except KeyboardInterrupt:
        print("stopped before the demo was up", file=sys.stderr)
        return 130
    except (RuntimeError, OSError) as exc:
        print(f"demo failed to start: {exc}", file=sys.stderr)
        return 1
    print("\nThe demo is running. Open one chat per tenant:")
    if stack.oidc:  # --- oidc mode (gateway/): only the gateway URLs sign users in ---
        for ep in stack.endpoints.values():
            print(f"  {ep.tenant:<10} {stack.gateway_url(ep.tenant)}/   ({ep.display_name}; via Envoy)")
        print(f"Sign-in (local test issuer {stack.issuer.issuer_url}, no passwords):")
        for user in stack.issuer.users.values():
            role = " (admin: Documents page)" if "admins" in user.groups else ""
            print(f"  {user.username:<10} {user.email}  tenant {user.tenant}{role}: "
                  f"{stack.gateway_url(user.tenant)}/oauth2/login?user={user.username}")  # fmt: skip
    else:
        for ep in stack.endpoints.values():
            print(f"  {ep.tenant:<10} {ep.web_url}   ({ep.display_name}; API {ep.api_url}, docs {ep.api_url}/docs)")
    print(f"Logs: {stack.log_dir}. Press Ctrl-C to stop.\n", flush=True)
    try:
        signal.pause()
    except KeyboardInterrupt:
        pass
    finally:
        print("stopping...", flush=True)
        stack.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
