"""Export a tenant's feedback as JSONL: ``python -m rag.stores.feedback_export [--from D] [--to D] [--out FILE]``.

Reads ``TENANT_ID`` and ``FEEDBACK_URL`` / ``FEEDBACK_TABLE`` (+ ``AWS_DEFAULT_REGION``) like the
API. Dates are ISO dates or datetimes (UTC when no offset); default: the last 30 days. One JSON
object per line: the rating, comment, question, answer, sources and model id.
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime, timedelta

from rag.settings import SettingsError, load_settings
from rag.stores.feedback import make_feedback_store, to_jsonl


def parse_moment(value: str) -> datetime:
    """An ISO date (midnight UTC) or datetime (UTC when naive)."""
    moment = datetime.fromisoformat(value.strip())
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


def main(argv: list[str] | None = None) -> int:
    """CLI entry point; returns the exit code."""
    parser = argparse.ArgumentParser(prog="python -m rag.stores.feedback_export", description=__doc__.splitlines()[0])
    parser.add_argument("--tenant", help="default: TENANT_ID")
    parser.add_argument("--from", dest="start", help="ISO date/datetime (default: 30 days ago)")
    parser.add_argument("--to", dest="end", help="ISO date/datetime, exclusive (default: now)")
    parser.add_argument("--out", help="file to write (default: stdout)")
    args = parser.parse_args(argv)
    try:
        settings = load_settings(**({"tenant_id": args.tenant} if args.tenant else {}))
        end = parse_moment(args.end) if args.end else datetime.now(UTC)
        start = parse_moment(args.start) if args.start else end - timedelta(days=30)
    except SettingsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except ValueError as exc:
        print(f"error: --from/--to: {exc}", file=sys.stderr)
        return 2
    records = make_feedback_store(settings).query(settings.tenant_id, start, end)
    out = open(args.out, "w", encoding="utf-8") if args.out else sys.stdout  # noqa: SIM115
    try:
        out.writelines(to_jsonl(records))
    finally:
        if args.out:
            out.close()
    print(f"{len(records)} feedback records exported", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
