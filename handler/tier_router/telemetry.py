"""The per-request log line: one compact JSON object per request, on stdout.

Written straight to the stream rather than through `logging`: a LogRecord, caller lookup and
formatter cost more than the rest of the line, and this runs on every request. On Lambda,
stdout goes to CloudWatch Logs line by line; locally it is the terminal or a file.
The line carries routing facts and numbers only — never prompt text, never keys.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any, TextIO


class AccessLog:
    def __init__(self, stream: TextIO | None = None, *, enabled: bool = True) -> None:
        self._stream = stream
        self.enabled = enabled

    def write(self, record: dict[str, Any]) -> None:
        if not self.enabled:
            return
        record["ts"] = round(time.time(), 3)
        stream = self._stream or sys.stdout  # looked up late so test capture and redirection work
        stream.write(json.dumps(record, separators=(",", ":"), default=str) + "\n")
        stream.flush()
