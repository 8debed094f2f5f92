"""The response object returned by the pooled ``urlopen``: urllib's response API over a pooled connection.

Body reads go straight to the ``http.client.HTTPResponse`` that parsed the answer (the direct path's own,
or the one urllib3 parsed), so reading behaves exactly as with urllib (same chunked decoding, same
``IncompleteRead``, same timeouts, no content decoding). The only addition is bookkeeping: the connection
goes back to the pool when the body has been read to its end, and is closed instead when the caller closes
(or drops) the response before that, because unread bytes left on the socket would be read as the next
response.
"""

from __future__ import annotations

import http.client
import io
from collections.abc import Callable
from typing import Any, TypeVar

from db_utils.http.headers import parse_header_lines
from db_utils.http.wire import counters

# http.client's reader of a header block's lines (the one its parse_headers uses), if this Python has it.
_read_headers: Callable[[Any], list[bytes]] | None = getattr(http.client, "_read_headers", None)

_T = TypeVar("_T")


class PooledResponse(io.BufferedIOBase):
    """What ``urllib.request.urlopen`` returns for http(s), attribute for attribute.

    As in urllib, ``msg`` is the reason phrase and ``headers``/``info()`` the ``http.client.HTTPMessage``.
    Attributes not defined here (``length``, ``chunked``, ``will_close``...) are read from the underlying
    ``http.client.HTTPResponse``.

    ``release(reusable)`` hands the connection back exactly once: ``True`` when the body was read to its
    end (the connection may carry another request), ``False`` when it must be closed.
    """

    def __init__(
        self, raw: http.client.HTTPResponse, url: str, method: str, release: Callable[[bool], None]
    ) -> None:
        self._release = release
        self._raw = raw
        self._settled = False
        self._broken = False
        self.url = url
        self.status = self.code = raw.status
        self.reason = raw.reason
        self.headers = raw.msg
        self.msg = raw.reason  # urllib replaces .msg with the reason phrase; see AbstractHTTPHandler.do_open
        self.version = raw.version
        if method == "HEAD" or (raw.length == 0 and not raw.chunked):
            raw.read()  # nothing to read (HEAD, 204, 304, empty body): lets http.client mark the end now
        self._settle_if_finished()

    # -- urllib's response API -------------------------------------------------------------------------
    def geturl(self) -> str:
        return self.url

    def getcode(self) -> int:
        return self.status

    def info(self) -> http.client.HTTPMessage:
        return self.headers

    def getheader(self, name: str, default: Any = None) -> Any:
        return self._raw.getheader(name, default)

    def getheaders(self) -> list[tuple[str, str]]:
        return self._raw.getheaders()

    def isclosed(self) -> bool:
        return self._raw.isclosed()

    def fileno(self) -> int:
        return self._raw.fileno()

    def readable(self) -> bool:
        return True

    # -- reading: delegate, then return the connection if the body is finished --------------------------
    def read(self, amt: int | None = None) -> bytes:
        # io's convention (and urllib's effective behavior, its server closes the connection after the
        # body) is that a negative size reads everything; http.client would instead read the socket until
        # EOF, which on a kept-alive connection waits for the server's idle timeout.
        return self._reading(self._raw.read, None if amt is not None and amt < 0 else amt)

    def read1(self, n: int = -1) -> bytes:
        return self._reading(self._raw.read1, n)

    def readinto(self, buffer: Any) -> int:
        return self._reading(self._raw.readinto, buffer)

    def readline(self, limit: int | None = -1) -> bytes:
        return self._reading(self._raw.readline, -1 if limit is None else limit)

    def peek(self, n: int = -1) -> bytes:
        return self._reading(self._raw.peek, n)

    def _reading(self, method: Callable[[Any], _T], argument: Any) -> _T:
        try:
            result = method(argument)
        except BaseException:
            self._broken = True  # a timed-out or cut-off body: the connection must never be reused
            raise
        self._settle_if_finished()
        return result

    def close(self) -> None:
        try:
            self._settle()
        finally:
            super().close()

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):  # never forward private lookups (also guards the half-built object)
            raise AttributeError(name)
        return getattr(self._raw, name)

    # -- connection bookkeeping ------------------------------------------------------------------------
    def _settle_if_finished(self) -> None:
        if not self._settled and self._finished():
            self._settle()

    def _finished(self) -> bool:
        raw = self._raw
        return not self._broken and (raw.isclosed() or (not raw.chunked and raw.length == 0))

    def _settle(self) -> None:
        """Hand the connection back once: to the pool if the body was fully read, else closed first."""
        if self._settled or not hasattr(self, "_release"):
            return
        self._settled = True
        if self._finished():
            self._raw.close()  # no-op when http.client already reached the end itself
            self._release(True)
        else:
            counters.add(discarded=1)
            self._release(False)  # the socket is closed: its unread bytes belong to this response only


class DirectResponse(http.client.HTTPResponse):
    """The direct path's response: urllib's own ``http.client.HTTPResponse``, which hands its connection back.

    urllib returns the ``http.client.HTTPResponse`` itself (with ``url`` and ``msg`` set on it); so does the
    direct path, with no wrapper in between. http.client calls ``_close_conn()`` when the body has been
    read to its end, when a read finds it cut short (``IncompleteRead``), and on ``close()``: that is
    where the connection goes back, through ``release(complete)``. Complete means the whole body came
    (a known length read down to 0, or a chunked body with its trailer) and the caller did not close it
    early; anything else closes the connection, because its unread bytes belong to this response only.
    """

    release: Callable[[bool], None] | None = None
    _trailer_read = False
    _abandoned = False

    def begin(self) -> None:
        """``http.client.HTTPResponse.begin``, step for step, with the header block parsed by
        :func:`~db_utils.http.headers.parse_header_lines` (the same ``HTTPMessage``, built directly for
        the blocks servers send) and its headers looked up once each. At ``debuglevel`` > 0, or without
        http.client's ``_read_headers``, http.client's own ``begin`` runs."""
        started: object = self.headers
        if started is not None:
            return  # the response is being read already
        if self.debuglevel > 0 or _read_headers is None:
            super().begin()
            return
        status = self._read_final_status()
        message, first = parse_header_lines(_read_headers(self.fp))
        self.headers = self.msg = message
        self._frame_body(status, message.get if first is None else first.get)

    def _read_final_status(self) -> int:
        """The status line of the first response that is not 100 Continue (earlier ones are skipped)."""
        assert _read_headers is not None  # begin() checked
        while True:
            version, status, reason = self._read_status()  # type: ignore[attr-defined]
            if status != http.client.CONTINUE:
                break
            _read_headers(self.fp)  # the 100 response's headers, skipped
        self.code = self.status = status
        self.reason = reason.strip()
        if version in ("HTTP/1.0", "HTTP/0.9"):  # some servers still answer "0.9": treated as 1.0
            self.version = 10
        elif version.startswith("HTTP/1."):
            self.version = 11  # HTTP/1.1 for HTTP/1.x, x >= 1
        else:
            raise http.client.UnknownProtocol(version)
        return int(status)

    def _frame_body(self, status: int, get: Callable[[str], str | None]) -> None:
        """How the body ends (chunked, a length, or the connection's close), from the headers."""
        transfer_encoding = get("transfer-encoding")
        if transfer_encoding and transfer_encoding.lower() == "chunked":
            self.chunked = True
            self.chunk_left = None
        else:
            self.chunked = False
        self.will_close = _will_close(self.version, get)
        # A Content-Length is ignored with chunked encoding, and when it is not a number >= 0.
        self.length = None
        length = get("content-length")
        if length and not self.chunked:
            try:
                self.length = int(length)
            except ValueError:
                self.length = None
            else:
                if self.length < 0:
                    self.length = None
        if status in (http.client.NO_CONTENT, http.client.NOT_MODIFIED) or 100 <= status < 200:
            self.length = 0  # a body of fixed length zero
        elif self._method == "HEAD":  # type: ignore[attr-defined]
            self.length = 0
        if not self.will_close and not self.chunked and self.length is None:
            self.will_close = True  # an open connection, no chunking, no length: the body ends at close

    def read(self, amt: int | None = None) -> bytes:
        # io's convention (and urllib's effective behavior, its server closes the connection after the
        # body) is that a negative size reads everything; http.client would instead read the socket until
        # EOF, which on a kept-alive connection waits for the server's idle timeout.
        return super().read(None if amt is not None and amt < 0 else amt)

    # read1() and readline() count a known length down without calling _close_conn() at 0.
    def read1(self, n: int = -1) -> bytes:
        data = super().read1(n)
        self._finish_if_read()
        return data

    def readline(self, limit: int | None = -1) -> bytes:
        data = super().readline(-1 if limit is None else limit)
        self._finish_if_read()
        return data

    def _finish_if_read(self) -> None:
        if self.fp is not None and not self.chunked and self.length == 0:
            self._close_conn()

    def close(self) -> None:
        if self.fp is not None:
            self._abandoned = True  # closed with the body (or part of it) still unread
        super().close()

    def _read_and_discard_trailer(self) -> None:
        super()._read_and_discard_trailer()  # type: ignore[misc]
        self._trailer_read = True

    def _close_conn(self) -> None:
        complete = not self._abandoned and (self._trailer_read if self.chunked else not self.length)
        super()._close_conn()  # type: ignore[misc]
        release, self.release = self.release, None
        if release is not None:
            if not complete:
                counters.add(discarded=1)
            release(complete)


def _will_close(version: int, get: Callable[[str], str | None]) -> bool:
    """``http.client.HTTPResponse._check_close`` with ``get`` as the header lookup."""
    connection = get("connection")
    if version == 11:  # HTTP/1.1 stays open unless the server says close
        return bool(connection and "close" in connection.lower())
    # HTTP/1.0 closes, unless Keep-Alive is set or the connection (or Netscape's Proxy-Connection) says so.
    if get("keep-alive"):
        return False
    if connection and "keep-alive" in connection.lower():
        return False
    proxy_connection = get("proxy-connection")
    return not (proxy_connection and "keep-alive" in proxy_connection.lower())
