"""A fake OTLP/HTTP collector on 127.0.0.1 for the tracing tests: it keeps what is posted and
decodes it with opentelemetry-proto."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import Span


class FakeCollector:
    """An OTLP/HTTP receiver on 127.0.0.1: keeps each POST; `hang` makes it never answer;
    `keep_alive` keeps a connection open for the next POST (HTTP/1.1, as real collectors do)."""

    def __init__(self, *, hang: bool = False, keep_alive: bool = False) -> None:
        self.posts: list[tuple[str, str, bytes]] = []
        self.client_ports: list[int] = []
        """Each POST's client port: which TCP connection it came on (`keep_alive`: reused)."""
        self.release = threading.Event()
        collector = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1" if keep_alive else "HTTP/1.0"

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                collector.posts.append((self.path, self.headers.get("content-type", ""), body))
                collector.client_ports.append(self.client_address[1])
                if hang:
                    collector.release.wait(30)
                    return
                self.send_response(200)
                self.send_header("content-type", "application/x-protobuf")
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()

    def spans(self) -> list[tuple[dict[str, Any], Span]]:
        """Every span posted, with its resource's attributes."""
        found = []
        for _, _, body in self.posts:
            request = ExportTraceServiceRequest.FromString(body)
            for resource_spans in request.resource_spans:
                resource = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
                for scope_spans in resource_spans.scope_spans:
                    found += [(resource, span) for span in scope_spans.spans]
        return found


def attributes(span: Span) -> dict[str, Any]:
    """A decoded span's attributes as plain values."""
    values: dict[str, Any] = {}
    for a in span.attributes:
        kind = a.value.WhichOneof("value")
        values[a.key] = getattr(a.value, kind) if kind else None
    return values
