"""A response's header block as the very ``http.client.HTTPMessage`` http.client builds, built directly.

``http.client.parse_headers`` joins the header lines and hands them to the ``email`` package's
``FeedParser``, a parser for whole MIME messages (envelope lines, folded headers, multipart bodies), and
``HTTPResponse.begin`` then looks up three or four headers with ``Message.get``, each a scan of every
header. For the header blocks servers send (one ``Name: value`` per line) that is most of a kept-alive
request's client time. :func:`parse_header_lines` builds the message the parser would build, with the
same ``_headers`` pairs, payload and policy, and a first-occurrence index by lower-cased name for
``begin``'s lookups; any block the shortcut cannot prove the parser would read the same way (a folded or
malformed line, a bare CR, a block cut short, a multipart or ``message/*`` content type, which the parser
parses further) goes to ``email.parser`` exactly as http.client sends it.
"""

from __future__ import annotations

import email.parser
import http.client
import re

# One header line the email parser reads as exactly one ``Name: value`` header: a name of the characters
# its headerRE accepts before the colon (none of them a space, so never a "From " envelope line), then a
# value without CR, ended by CRLF or LF (http.client reads lines up to LF; a CR elsewhere would end a line
# for the parser).
_SIMPLE_LINE = re.compile(rb"([\x21-\x39\x3b-\x7e]+):([^\r\n]*)\r?\n")
_BLANK_LINES = (b"\r\n", b"\n")


def parse_header_lines(lines: list[bytes]) -> tuple[http.client.HTTPMessage, dict[str, str] | None]:
    """``http.client.parse_headers`` on lines ``http.client._read_headers`` read (the blank line last).

    Returns the message and, when the shortcut built it, each header's first value by lower-cased name
    (what ``Message.get`` returns); None when ``email.parser`` did, whose ``get`` must then be asked.
    """
    if lines and lines[-1] in _BLANK_LINES:
        message = http.client.HTTPMessage()
        pairs = message._headers  # type: ignore[attr-defined]  # what Message.set_raw appends to
        first: dict[str, str] = {}
        match = _SIMPLE_LINE.fullmatch
        for line in lines[:-1]:
            simple = match(line)
            if simple is None:
                break
            name = simple[1].decode("iso-8859-1")
            # compat32's header_source_parse: the value after the colon, blanks and tabs stripped on the left.
            value = simple[2].decode("iso-8859-1").lstrip(" \t")
            pairs.append((name, value))
            first.setdefault(name.lower(), value)
        else:
            content_type = first.get("content-type")
            if content_type is None or not _parsed_further(content_type):
                message._payload = ""  # type: ignore[attr-defined]  # the parser's payload: the empty rest
                return message, first
    text = b"".join(lines).decode("iso-8859-1")
    parsed: http.client.HTTPMessage = email.parser.Parser(_class=http.client.HTTPMessage).parsestr(text)
    return parsed, None


def _parsed_further(content_type: str) -> bool:
    """Whether the email parser does more than store the (empty) payload for this Content-Type: it parses
    ``multipart/*`` and ``message/*`` bodies, and notes defects when they are missing. Erring towards
    True only costs the email parser's time."""
    lowered = content_type.lower()
    return "multipart" in lowered or "message" in lowered
