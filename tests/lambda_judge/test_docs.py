"""docs/quality-loop.md, "Judging on Lambda": the template it shows is the template we ship."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_template_snippets_are_in_template_yaml() -> None:
    page = (ROOT / "docs" / "quality-loop.md").read_text(encoding="utf-8")
    text = page.split("\n## Judging on Lambda\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```yaml\n(.*?)```", text, flags=re.S)
    template = (ROOT / "template.yaml").read_text(encoding="utf-8")
    assert len(blocks) == 2
    for block in blocks:
        assert block in template, block
    # The policy names the function's own ARN, and the retries are off for the function itself.
    assert "Resource: !GetAtt RouterFunction.Arn" in blocks[1]
    function = template.split("  RouterFunction:\n", 1)[1].split("\n  SelfInvokePolicy:", 1)[0]
    assert "      EventInvokeConfig:\n        MaximumRetryAttempts: 0\n" in function
