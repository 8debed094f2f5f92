"""The direct path's response parsing: whatever the server sends, the same objects as http.client's own.

``DirectResponse.begin`` builds the header block's ``HTTPMessage`` directly when it can prove the email
parser would read it the same way (db_utils/http/headers.py). These tests feed the same bytes to
``http.client.HTTPResponse`` and to ``DirectResponse`` and compare everything urllib's caller can see:
status, reason, version, the body's framing, the message object attribute for attribute (defects
included), every header lookup, and the body.
"""

from __future__ import annotations

import email.errors
import email.message
import http.client
import io
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from db_utils.http.headers import parse_header_lines
from db_utils.http.response import DirectResponse


class _Socket:
    """What HTTPResponse needs of a socket: ``makefile``, over bytes received."""

    def __init__(self, data: bytes) -> None:
        self._data = data

    def makefile(self, mode: str, *args: Any, **kwargs: Any) -> io.BytesIO:
        return io.BytesIO(self._data)


def _outcome(response_class: type[http.client.HTTPResponse], data: bytes, method: str) -> dict[str, Any]:
    response = response_class(_Socket(data), method=method)  # type: ignore[arg-type]
    try:
        response.begin()
    except Exception as error:  # both must fail alike
        return {"error": (type(error), str(error))}
    message = response.msg
    seen = {
        "status": response.status,
        "reason": response.reason,
        "version": response.version,
        "chunked": response.chunked,
        "chunk_left": response.chunk_left,
        "length": response.length,
        "will_close": response.will_close,
        "message": _plain(message),
        "items": message.items(),
        "lookups": {name: message.get_all(name) for name in _LOOKED_UP},
        "content_type": message.get_content_type(),
    }
    try:
        seen["body"] = response.read()
    except Exception as error:
        seen["body"] = (type(error), str(error))
    return seen


def _plain(value: Any) -> Any:
    """A message (and the messages in its payload) as comparable data, attribute for attribute."""
    if isinstance(value, email.message.Message):
        return (type(value), {name: _plain(item) for name, item in vars(value).items()})
    if isinstance(value, list):
        return [_plain(item) for item in value]
    if isinstance(value, email.errors.MessageDefect):
        return (type(value), str(value))
    return value


_LOOKED_UP = ("transfer-encoding", "content-length", "connection", "keep-alive", "proxy-connection", "x-a")


def assert_parsed_alike(data: bytes, method: str = "GET") -> None:
    assert _outcome(DirectResponse, data, method) == _outcome(http.client.HTTPResponse, data, method)


# -- the header lines servers send, and the ones they should not -----------------------------------------

_NAME_CHARS = "abcXYZ09-_!#$%&'*+.^`|~"
_VALUE_CHARS = st.characters(min_codepoint=0x20, max_codepoint=0xFF, blacklist_characters="\x7f")

simple_lines = st.builds(
    lambda name, blank, value, end: f"{name}:{blank}{value}".encode("latin-1") + end,
    st.text(_NAME_CHARS, min_size=1, max_size=12),
    st.sampled_from(["", " ", "  ", "\t", " \t"]),
    st.text(_VALUE_CHARS, max_size=20),
    st.sampled_from([b"\r\n", b"\n"]),
)
framing_lines = st.sampled_from(
    [
        b"Transfer-Encoding: chunked\r\n",
        b"transfer-encoding: CHUNKED\r\n",
        b"Transfer-Encoding: gzip, chunked\r\n",
        b"Content-Length: 5\r\n",
        b"content-length: 0\r\n",
        b"Content-Length: -3\r\n",
        b"Content-Length: five\r\n",
        b"Connection: close\r\n",
        b"Connection: Keep-Alive\r\n",
        b"Keep-Alive: timeout=5\r\n",
        b"Proxy-Connection: keep-alive\r\n",
        b"X-A: first\r\n",
        b"x-a: second\r\n",
        b"Content-Type: text/html; charset=utf-8\r\n",
    ]
)
awkward_lines = st.sampled_from(
    [
        b" folded continuation\r\n",
        b"\tfolded with a tab\r\n",
        b"no colon at all\r\n",
        b": no name\r\n",
        b"From someone@example.com\r\n",
        b"From : spaced\r\n",
        b"Bad Name: a space in the name\r\n",
        b"X-Cr: a\rbare CR\r\n",
        b"X-Cr-End: value\r\r\n",
        b"\xe9t\xe9: latin-1 name\r\n",
        b"Content-Type: multipart/mixed; boundary=x\r\n",
        b"Content-Type: message/rfc822\r\n",
        b"Content-Type: Multipart/Form-Data\r\n",
        b"Content-Type: text/plain; note=message\r\n",
        b"X-Vt: a\x0bb\x0cc\x1cd\x85e\r\n",
    ]
)
header_lines = st.lists(st.one_of(simple_lines, framing_lines, awkward_lines), max_size=12)


@st.composite
def responses(draw: st.DrawFn) -> tuple[bytes, str]:
    version = draw(st.sampled_from(["HTTP/1.1", "HTTP/1.0", "HTTP/1.2"]))
    status = draw(st.sampled_from([200, 204, 304, 404, 101]))
    head = b"HTTP/1.1 100 Continue\r\nX-Early: 1\r\n\r\n" if draw(st.booleans()) else b""
    head += f"{version} {status} Some Reason \r\n".encode()
    lines = draw(header_lines)
    end = draw(st.sampled_from([b"\r\n", b"\n", b""]))  # b"": the block cut short by the end of the stream
    chunked = b"5\r\nhello\r\n0\r\n\r\n"
    body = draw(st.sampled_from([b"", b"hello", chunked, b"hello world, longer than five"]))
    method = draw(st.sampled_from(["GET", "HEAD"]))
    return head + b"".join(lines) + end + body, method


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(responses())
def test_any_response_parses_as_http_client_parses_it(response: tuple[bytes, str]) -> None:
    data, method = response
    assert_parsed_alike(data, method)


@pytest.mark.parametrize(
    "block",
    [
        b"Server: nginx\r\nContent-Type: text/html\r\nContent-Length: 5\r\n\r\n",
        b"Server: nginx\nContent-Length: 5\n\n",  # LF line ends
        b"Content-Length: 5\r\nContent-Length: 7\r\n\r\n",  # the first one counts
        b"X-Spaces:   padded value  \r\nContent-Length: 5\r\n\r\n",  # blanks kept on the right
        b"X-Empty:\r\nContent-Length: 5\r\n\r\n",
        b"X-Latin: caf\xe9\r\nContent-Length: 5\r\n\r\n",
    ],
)
def test_the_blocks_servers_send_are_built_directly_and_alike(block: bytes) -> None:
    lines = io.BytesIO(block).readlines()
    message, first = parse_header_lines(lines)
    assert first is not None  # the shortcut built it
    assert first == {name.lower(): message.get(name) for name in reversed(message.keys())}
    assert_parsed_alike(b"HTTP/1.1 200 OK\r\n" + block + b"hello")


@pytest.mark.parametrize(
    "block",
    [
        b"X-A: 1\r\n folded\r\n\r\n",
        b"no colon\r\n\r\n",
        b"X-Cr: a\rb\r\n\r\n",
        b"Content-Type: multipart/mixed; boundary=x\r\n\r\n",
        b"Content-Type: message/rfc822\r\n\r\n",
        b"X-A: cut short\r\n",  # no blank line: the stream ended
    ],
)
def test_blocks_the_shortcut_cannot_vouch_for_go_to_the_email_parser(block: bytes) -> None:
    _, first = parse_header_lines(io.BytesIO(block).readlines())
    assert first is None
    assert_parsed_alike(b"HTTP/1.1 200 OK\r\n" + block + b"hello")
