"""The TCP data plane: a listener that admits connections bearing a one-time token."""

from __future__ import annotations

import contextlib
import logging
import socket
import ssl
import threading
import time

from blit_shared.errors import BlitError
from blit_shared.receiver import Receiver
from blit_shared.source import stream_frames
from blit_shared.transport import ACK, read_hello, receive, send_frames

from .sessions import Session, Sessions

log = logging.getLogger("blitd.data")
HELLO_TIMEOUT = 10.0
THROTTLE_AFTER = 20     # bad hellos from one address within THROTTLE_WINDOW seconds...
THROTTLE_WINDOW = 60.0  # ...and its connections are dropped unread until the window ends


class Throttle:
    """Counts bad tokens per address, so guessing a token costs a minute per 20 tries."""

    def __init__(self) -> None:
        self._bad: dict[str, tuple[int, float]] = {}
        self._lock = threading.Lock()

    def blocked(self, addr: str) -> bool:
        with self._lock:
            count, since = self._bad.get(addr, (0, 0.0))
            if time.monotonic() - since > THROTTLE_WINDOW:
                self._bad.pop(addr, None)
                return False
            return count >= THROTTLE_AFTER

    def failed(self, addr: str) -> None:
        with self._lock:
            now = time.monotonic()
            count, since = self._bad.get(addr, (0, now))
            if now - since > THROTTLE_WINDOW:
                count, since = 0, now
            self._bad[addr] = (count + 1, since)
            if count + 1 == THROTTLE_AFTER:
                log.warning("data port: %s sent %d bad tokens; throttled for %.0f s", addr,
                            THROTTLE_AFTER, THROTTLE_WINDOW)


def run_stream_socket(session: Session, sock: socket.socket) -> None:
    """Move one record stream of `session` over `sock`, in the daemon's role."""
    error = None
    try:
        if session.role == "destination":
            assert session.destination is not None and session.destination.sink is not None
            receive(sock, Receiver(session.destination.sink, session.options.verify))
        else:
            assert session.source is not None and session.queue is not None
            send_frames(sock, stream_frames(session.source, session.queue, sock.gettimeout()))
    except (BlitError, OSError) as exc:
        error = getattr(exc, "message", None) or str(exc)
        log.warning("transfer %s: data stream failed: %s", session.id, error)
    finally:
        sock.close()
        session.stream_finished(error)


class DataPlane:
    """Accepts data connections on its own port; each runs in a thread of its own."""

    def __init__(self, sessions: Sessions, host: str, port: int,
                 io_timeout: float = 60.0, tls: ssl.SSLContext | None = None) -> None:
        self.tls = tls
        self.sessions = sessions
        self.io_timeout = io_timeout
        self.throttle = Throttle()
        self.sock = socket.create_server((host, port), backlog=128)
        self.port: int = self.sock.getsockname()[1]
        self._thread = threading.Thread(target=self._accept_loop, name="blitd-data",
                                        daemon=True)

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()

    def _accept_loop(self) -> None:
        while True:
            try:
                conn, addr = self.sock.accept()
            except OSError:
                return  # closed
            threading.Thread(target=self._admit, args=(conn, addr), daemon=True).start()

    def _admit(self, conn: socket.socket, addr: tuple[str, int]) -> None:
        if self.throttle.blocked(addr[0]):
            conn.close()
            return
        conn.settimeout(HELLO_TIMEOUT)
        try:
            if self.tls is not None:
                conn = self.tls.wrap_socket(conn, server_side=True)
            token = read_hello(conn)
        except (BlitError, OSError) as exc:
            log.warning("data connection from %s dropped: %s", addr[0], exc)
            self.throttle.failed(addr[0])
            conn.close()
            return
        session = self.sessions.claim(token)
        if session is None:
            log.warning("data connection from %s dropped: unknown, used or expired token",
                        addr[0])
            self.throttle.failed(addr[0])
            conn.close()
            return
        try:
            conn.sendall(ACK)
        except OSError:
            conn.close()
            session.stream_finished("client went away during handshake")
            return
        conn.settimeout(self.io_timeout)
        run_stream_socket(session, conn)
