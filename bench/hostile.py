"""A hand-driven HTTP/2 gRPC client for hostile callers: streams opened and never finished, bodies
cut short, frames no gRPC library would send. Loopback only; used by the soak and the tests.

One `RawConnection` is one TCP connection (h2 does the framing). A thread reads the socket so
that settings and pings are answered and every stream's end is recorded; what the caller sends,
and when, is up to the caller.
"""

from __future__ import annotations

import collections
import contextlib
import select
import socket
import ssl
import struct
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

import h2.config
import h2.connection
import h2.events
import h2.exceptions


def grpc_frame(message: bytes, compressed: bool = False) -> bytes:
    """A gRPC length-prefixed message: flag byte, 4-byte big-endian length, the bytes."""
    return struct.pack(">BI", 1 if compressed else 0, len(message)) + message


def _text(value: bytes | str) -> str:
    # h2 is typed to hand header names and values as bytes, but with header_encoding="utf-8"
    # (as RawConnection sets) it hands str; decode either way so the lookups below are by str.
    return value if isinstance(value, str) else value.decode()


@dataclass
class StreamEnd:
    """How a stream ended: its gRPC status from the trailers, or the HTTP/2 reset code."""

    grpc_status: int | None = None
    grpc_message: str = ""
    reset_code: int | None = None
    data: bytearray = field(default_factory=bytearray)


class RawConnection:
    def __init__(
        self, address: str, timeout: float = 30.0, tls: ssl.SSLContext | None = None, take_replies: bool = True
    ):
        """`tls`: a client context (with a client certificate for mutual TLS); h2 is negotiated by ALPN.
        `take_replies=False`: a caller that never takes its replies (HTTP/2 flow control then stops
        the server's writes once 64 KiB are on their way)."""
        self.take_replies = take_replies
        host, port = address.rsplit(":", 1)
        sock = socket.create_connection((host, int(port)), timeout=timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if tls is not None:
            tls.set_alpn_protocols(["h2"])
            sock = tls.wrap_socket(sock, server_hostname="localhost")
        sock.settimeout(None)  # `timeout` was for connecting: a silent server is no closed connection
        self.sock = sock
        self.authority = address
        self.conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
        self.lock = threading.Lock()
        self.ended: dict[int, StreamEnd] = {}
        self.changed = threading.Condition(self.lock)
        self.closed = False
        self.pings_acked = 0
        self.unacknowledged: collections.Counter[int] = collections.Counter()
        with self.lock:
            self.conn.initiate_connection()
            self._flush()
        self.reader = threading.Thread(target=self._read, daemon=True, name="raw-h2-reader")
        self.reader.start()

    def _flush(self) -> None:
        data = self.conn.data_to_send()
        if data:
            self.sock.sendall(data)

    def _read(self) -> None:
        partial: dict[int, StreamEnd] = {}
        while True:
            data = self._receive()
            if data is None:
                continue
            with self.lock:
                if not data:
                    self.closed = True
                    self.changed.notify_all()
                    return
                try:
                    events = self.conn.receive_data(data)
                except h2.exceptions.ProtocolError:
                    self.closed = True
                    self.changed.notify_all()
                    return
                for event in events:
                    if isinstance(event, h2.events.DataReceived):
                        partial.setdefault(event.stream_id, StreamEnd()).data += event.data
                        if self.take_replies:
                            self.conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                        else:
                            self.unacknowledged[event.stream_id] += event.flow_controlled_length
                    elif isinstance(event, (h2.events.TrailersReceived, h2.events.ResponseReceived)):
                        headers = {_text(k): _text(v) for k, v in event.headers}
                        if "grpc-status" in headers:  # trailers, or a trailers-only response
                            sid = event.stream_id
                            end = partial.pop(sid, StreamEnd())
                            end.grpc_status = int(headers["grpc-status"])
                            end.grpc_message = headers.get("grpc-message", "")
                            self.ended[sid] = end
                    elif isinstance(event, h2.events.StreamReset):
                        sid = event.stream_id
                        end = self.ended.setdefault(sid, partial.pop(sid, StreamEnd()))
                        end.reset_code = event.error_code
                    elif isinstance(event, h2.events.ConnectionTerminated):
                        self.closed = True
                    elif isinstance(event, h2.events.PingAckReceived):
                        self.pings_acked += 1
                try:
                    self._flush()
                except OSError:
                    self.closed = True
                self.changed.notify_all()

    def _receive(self) -> bytes | None:
        """The next bytes read (b"" once the connection is closed), or None if none came yet.

        The socket is read under the lock that writes take: one SSL object must never be read and
        written by two threads at once (OpenSSL does not allow it; done anyway it fails now and
        then with a TLS error that looks like the server closing the connection). So wait for
        bytes outside the lock, then read them, without blocking, inside it."""
        ready = isinstance(self.sock, ssl.SSLSocket) and self.sock.pending() > 0
        if not ready:
            with contextlib.suppress(OSError, ValueError):
                ready = bool(select.select([self.sock], [], [], 0.5)[0])
            if not ready and self.sock.fileno() >= 0:
                return None
        with self.lock:
            try:
                self.sock.setblocking(False)
                return self.sock.recv(65536)
            except (ssl.SSLWantReadError, ssl.SSLWantWriteError, BlockingIOError):
                return None  # a TLS record not yet whole, or bytes that were only TLS housekeeping
            except OSError:
                return b""
            finally:
                with contextlib.suppress(OSError):
                    self.sock.setblocking(True)

    def open(self, path: str, body: bytes = b"", end_stream: bool = False, timeout: str | None = None) -> int:
        """Opens a stream on `path` (e.g. /subsidy.v1.EligibilityService/Evaluate), sends `body` as
        it is (whole, cut short or none) and, if `end_stream`, half-closes it. Returns its id."""
        headers = [
            (":method", "POST"),
            (":scheme", "http"),
            (":path", path),
            (":authority", self.authority),
            ("content-type", "application/grpc"),
            ("te", "trailers"),
        ]
        if timeout:
            headers.append(("grpc-timeout", timeout))
        with self.lock:
            sid = self.conn.get_next_available_stream_id()
            self.conn.send_headers(sid, headers, end_stream=end_stream and not body)
            if body:
                self.conn.send_data(sid, body, end_stream=end_stream)
            self._flush()
        return sid

    def send(self, sid: int, body: bytes, end_stream: bool = False) -> None:
        with self.lock:
            self.conn.send_data(sid, body, end_stream=end_stream)
            self._flush()

    def start_taking_replies(self) -> None:
        """From now on take replies, those held back included: the server can send again."""
        with self.lock:
            self.take_replies = True
            for sid, size in self.unacknowledged.items():
                with contextlib.suppress(h2.exceptions.StreamClosedError):
                    self.conn.acknowledge_received_data(size, sid)
            self.unacknowledged.clear()
            self._flush()

    def sync(self, timeout: float = 30.0) -> bool:
        """Sends a PING and waits for its ACK: the server has then read every frame sent before it."""
        with self.lock:
            want = self.pings_acked + 1
            self.conn.ping(want.to_bytes(8, "big"))
            self._flush()
            return self.changed.wait_for(lambda: self.closed or self.pings_acked >= want, timeout)

    def wait_until(self, predicate: Callable[[dict[int, StreamEnd]], bool], timeout: float) -> bool:
        """Waits until `predicate(ended streams)` holds; False after `timeout` (a hang guard)."""
        with self.lock:
            return self.changed.wait_for(lambda: self.closed or predicate(self.ended), timeout)

    def wait_ended(self, streams: list[int], timeout: float) -> bool:
        """True once every stream has ended (trailers or reset), False after `timeout` (a hang guard)."""
        with self.lock:
            return self.changed.wait_for(lambda: self.closed or all(s in self.ended for s in streams), timeout)

    def open_streams(self) -> int:
        with self.lock:
            return self.conn.open_outbound_streams

    def close(self) -> None:
        with contextlib.suppress(OSError, h2.exceptions.ProtocolError), self.lock:
            self.conn.close_connection()
            self._flush()
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
        self.reader.join(5)
