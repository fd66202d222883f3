"""The web application as telerad serves it: Django's WSGI application, run in a thread pool under uvicorn.

Django's own ASGI handler moves each request between the event loop and a
worker thread at every synchronous middleware and again for the view, and
runs all synchronous views on one thread. telerad's views and middleware
are synchronous, so it serves Django as a WSGI application instead: each
request runs on one pool thread from start to end, and several requests run
at once. On a 500-slice CT, frames went from 77 to 112 per second over one
connection.
"""

import os
import sys

import django
from a2wsgi import WSGIMiddleware
from django.core.handlers.wsgi import LimitedStream, WSGIHandler, WSGIRequest

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "telerad.settings")
django.setup(set_prefix=False)

from telerad.core.body_limit import RequestBodyLimit  # noqa: E402 - needs the settings above

# Requests served at once; more wait in uvicorn.
WEB_THREADS = 8


class StreamedRequest(WSGIRequest):
    """A request whose chunked body (no Content-Length) is read to its end.

    Django reads no body without a Content-Length, but DICOMweb clients send
    uploads chunked. The ASGI layer ends the stream with the body, and
    RequestBodyLimit bounds its size.
    """

    def __init__(self, environ: dict) -> None:
        super().__init__(environ)
        if "CONTENT_LENGTH" not in environ and "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower():
            self._stream = LimitedStream(environ["wsgi.input"], sys.maxsize)


class TeleradWSGIHandler(WSGIHandler):
    request_class = StreamedRequest


django_application = TeleradWSGIHandler()
application = RequestBodyLimit(WSGIMiddleware(django_application, workers=WEB_THREADS))
