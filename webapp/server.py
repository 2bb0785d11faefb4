"""Start the web chat: ``python -m webapp.server [streamlit options]`` = ``streamlit run webapp/app.py``
with the websocket handshake hardened.

Streamlit (1.57+) serves through uvicorn, whose ``websockets-sansio`` protocol hands the upgrade
request of ``/_stcore/stream`` to the ``websockets`` library. When that library refuses the
handshake (a header line over ``WEBSOCKETS_MAX_LINE_LENGTH``, default 8192 bytes, or more than
``WEBSOCKETS_MAX_NUM_HEADERS`` headers) it queues a 431/414 response but emits no event, and uvicorn
up to 0.54 writes nothing: the connection stays open with no answer for as long as the client keeps it
(an outside attack run held one for 75 s; Streamlit's report:
https://github.com/streamlit/streamlit/pull/15492). uvicorn 0.55 answers it itself
(``WebSocketsSansIOProtocol.handle_handshake_exception``). Two changes, both before Streamlit starts:

1. the line limit is raised to :data:`MAX_HEADER_LINE_BYTES` (the gateway's whole header block
   limit, 60 KiB, plus room), so no request the gateway passes on is refused here;
2. :func:`install_handshake_fix` makes uvicorn send the library's refusal and close the connection
   at once, so a request over the limit (sent straight to the pod, bypassing the gateway) gets a
   431 instead of a hung socket; on a uvicorn that already does (0.55+) it changes nothing.

Everything else is Streamlit's own server, configured in ``.streamlit/config.toml``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

#: Longest single header line the websocket handshake accepts, in bytes (> the gateway's 60 KiB block).
MAX_HEADER_LINE_BYTES = 65_536
#: The page script.
APP_PATH = Path(__file__).resolve().with_name("app.py")


def _sansio_protocol() -> type | None:
    """uvicorn's ``websockets-sansio`` protocol class, or None when this uvicorn has none."""
    try:
        from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
    except ImportError:
        return None
    return WebSocketsSansIOProtocol


def uvicorn_answers_refused_handshakes() -> bool:
    """True when the installed uvicorn sends the ``websockets`` library's 414/431 refusal of a handshake
    and closes the connection itself (``handle_handshake_exception``, uvicorn 0.55+)."""
    return hasattr(_sansio_protocol(), "handle_handshake_exception")


def install_handshake_fix() -> bool:
    """Make uvicorn answer and close a websocket handshake the ``websockets`` library refused.

    Returns:
        True when the fix was installed; False when uvicorn no longer has the
        ``websockets-sansio`` protocol this targets, or answers the refusal itself
        (:func:`uvicorn_answers_refused_handshakes`): then nothing is changed.
    """
    protocol = _sansio_protocol()
    if protocol is None or uvicorn_answers_refused_handshakes():
        return False
    original = protocol.data_received
    if getattr(original, "_tenant_rag_fix", False):
        return True

    def data_received(self: Any, data: bytes) -> None:  # self: WebSocketsSansIOProtocol
        original(self, data)
        # refused by websockets before any Request event: write its 4xx and close
        if not self.handshake_initiated and self.conn.handshake_exc is not None and not self.transport.is_closing():
            self.transport.write(b"".join(self.conn.data_to_send()))
            self.handshake_complete = self.close_sent = True
            self.transport.close()

    data_received._tenant_rag_fix = True  # type: ignore[attr-defined]
    protocol.data_received = data_received
    return True


def main(argv: list[str] | None = None) -> None:
    """Run ``streamlit run webapp/app.py <argv>`` in this process, with the handshake fix.

    Args:
        argv: Streamlit options, e.g. ``["--server.port", "8501"]`` (default ``sys.argv[1:]``).
    """
    # read by websockets at import time, hence before Streamlit (and uvicorn) are imported
    os.environ.setdefault("WEBSOCKETS_MAX_LINE_LENGTH", str(MAX_HEADER_LINE_BYTES))
    install_handshake_fix()
    from streamlit.web import cli

    cli.main(args=["run", str(APP_PATH), *(sys.argv[1:] if argv is None else argv)], prog_name="streamlit")


if __name__ == "__main__":
    main()
