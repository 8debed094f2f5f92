"""Client for the catalogue service (JSON over HTTP). Base URL from SERVICE_URL.

Each call opens a new HTTP connection with urlopen; the service is on the same network, so nobody
noticed the extra round trips until traffic grew.
"""

import json
import logging
import os
import socket
import uuid
from urllib.error import HTTPError, URLError
from urllib.request import Request, urlopen

log = logging.getLogger(__name__)

USER_AGENT = "legacy-app/2.3"
DEFAULT_TIMEOUT = 5


class ServiceError(Exception):
    """The service answered with an error status. ``status`` is the HTTP code, ``detail`` its message."""

    def __init__(self, status, detail):
        super().__init__("catalogue service returned %s: %s" % (status, detail))
        self.status = status
        self.detail = detail


class ServiceUnavailable(Exception):
    """The service could not be reached or did not answer in time."""


def base_url():
    return os.environ.get("SERVICE_URL", "http://127.0.0.1:8080").rstrip("/")


def _headers():
    headers = {"Accept": "application/json", "User-Agent": USER_AGENT, "X-Request-Id": uuid.uuid4().hex}
    token = os.environ.get("SERVICE_TOKEN")
    if token:
        headers["Authorization"] = "Bearer " + token
    return headers


def _error_detail(err):
    """The 'error' field of an error response's JSON body, or its raw text."""
    body = err.read().decode("utf-8", "replace")
    try:
        return json.loads(body).get("error", body)
    except (ValueError, AttributeError):
        return body


def _call(req, timeout):
    try:
        with urlopen(req, timeout=timeout) as resp:
            return json.loads(resp.read().decode("utf-8"))
    except HTTPError as e:
        raise ServiceError(e.code, _error_detail(e))
    except URLError as e:
        raise ServiceUnavailable("cannot reach %s: %s" % (req.full_url, e.reason))
    except socket.timeout:
        raise ServiceUnavailable("timed out waiting for %s" % req.full_url)


def get_json(path, timeout=DEFAULT_TIMEOUT):
    """GET ``path`` and decode the JSON body. Raises ServiceError / ServiceUnavailable."""
    req = Request(base_url() + path, headers=_headers())
    return _call(req, timeout)


def post_json(path, payload, timeout=DEFAULT_TIMEOUT):
    """POST ``payload`` as JSON to ``path`` and decode the JSON answer."""
    body = json.dumps(payload).encode("utf-8")
    headers = _headers()
    headers["Content-Type"] = "application/json"
    req = Request(base_url() + path, data=body, headers=headers, method="POST")
    return _call(req, timeout)


def get_product(sku):
    """The catalogue entry for ``sku``, or None if the catalogue does not know it (404)."""
    try:
        return get_json("/products/%s" % sku)
    except ServiceError as e:
        if e.status == 404:
            return None
        raise


def ping(timeout=2):
    """True if the service answers its health endpoint with 200."""
    try:
        resp = urlopen(base_url() + "/health", timeout=timeout)
    except (URLError, socket.timeout, ValueError):
        return False
    try:
        return resp.status == 200
    finally:
        resp.close()
