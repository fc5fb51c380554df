"""Write calibrated rules into a rules file, keeping everything else as it was.

ruamel.yaml's round trip keeps the other keys' order, comments, quoting and flow style. The
calibrated rules (named `calibrated-...`) go first in `rules:`, under one header comment;
a re-run removes the previous ones (and that header) before adding the new ones, so they are
replaced, never added twice. Each calibrated rule's `name` line carries a comment stating
the data and the expected quality and cost.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass
from typing import Any

PREFIX = "calibrated-"
HEADER = "calibrated by `tier-router calibrate`: a re-run replaces the rules named calibrated-..."
SEQUENCE_INDENT = re.compile(r"^rules:[ \t]*(?:#[^\n]*)?\n(?:[ \t]*(?:#[^\n]*)?\n)*( *)- ", re.MULTILINE)


@dataclass(frozen=True, slots=True)
class NewRule:
    name: str
    tier: str
    when: dict[str, Any]
    comment: str


def yaml_engine(text: str) -> Any:
    from ruamel.yaml import YAML

    engine = YAML(typ="rt")
    engine.preserve_quotes = True
    engine.width = 4096  # never re-wrap a long line
    match = SEQUENCE_INDENT.search(text)
    offset = len(match.group(1)) if match else 2
    engine.indent(mapping=2, sequence=offset + 2, offset=offset)
    return engine


def with_rules(text: str, new_rules: list[NewRule]) -> str:
    """`text` (a rules file) with `new_rules` first in `rules:` and no older calibrated rule."""
    from ruamel.yaml.comments import CommentedMap, CommentedSeq

    engine = yaml_engine(text)
    document = engine.load(text)
    if not isinstance(document, CommentedMap):
        raise ValueError("the rules file must be a YAML mapping")
    rules = document.get("rules")
    if rules is None:
        rules = document["rules"] = CommentedSeq()
    if not isinstance(rules, CommentedSeq):
        raise ValueError("rules: must be a list")
    rules.fa.set_block_style()
    take_key_comment(document, rules)
    kept: list[tuple[Any, list[Any]]] = []
    carried: list[Any] = []
    for i, item in enumerate(rules):
        before = [t for t in comments_before(rules, i) if HEADER not in str(getattr(t, "value", ""))]
        if is_calibrated(item):
            carried += before  # a person's comment above a replaced rule stays, above the next one
            continue
        kept.append((item, carried + before))
        carried = []
    fresh = [build(rule) for rule in new_rules]
    items = [(item, []) for item in fresh] + kept
    rules.clear()
    rules.ca.items.clear()
    if rules.ca.comment is not None and len(rules.ca.comment) > 1:
        rules.ca.comment[1] = None
    for item, _ in items:
        rules.append(item)
    for i, (_, before) in enumerate(items):
        if before:
            set_comments_before(rules, i, before)
    if fresh:
        rules.yaml_set_comment_before_after_key(0, before=HEADER, indent=match_indent(text))
    out = io.StringIO()
    engine.dump(document, out)
    return out.getvalue()


def take_key_comment(document: Any, rules: Any) -> None:
    """ruamel keeps the comment lines between `rules:` and the first item on the `rules` key as
    well: move them onto the sequence, where they belong to the first item."""
    entry = document.ca.items.get("rules")
    if not entry or len(entry) < 4 or not entry[3]:
        return
    tokens = entry[3]
    entry[3] = None
    if not comments_before(rules, 0):
        set_comments_before(rules, 0, list(tokens))


def match_indent(text: str) -> int:
    match = SEQUENCE_INDENT.search(text)
    return len(match.group(1)) if match else 2


def is_calibrated(item: Any) -> bool:
    return isinstance(item, dict) and str(item.get("name", "")).startswith(PREFIX)


def comments_before(seq: Any, index: int) -> list[Any]:
    if index == 0:
        comment = seq.ca.comment
        return list(comment[1] or []) if comment and len(comment) > 1 else []
    entry = seq.ca.items.get(index)
    return list(entry[1] or []) if entry and len(entry) > 1 else []


def set_comments_before(seq: Any, index: int, tokens: list[Any]) -> None:
    if index == 0:
        if seq.ca.comment is None:
            seq.ca.comment = [None, tokens]
        else:
            while len(seq.ca.comment) < 2:
                seq.ca.comment.append(None)
            seq.ca.comment[1] = tokens
        return
    seq.ca.items[index] = [None, tokens, None, None]


def build(rule: NewRule) -> Any:
    from ruamel.yaml.comments import CommentedMap

    item = CommentedMap()
    item["name"] = rule.name
    item["tier"] = rule.tier
    item["when"] = flow(rule.when)
    item.yaml_add_eol_comment(rule.comment, "name")
    return item


def flow(value: Any) -> Any:
    """A condition mapping with its leaves in flow style: `conversation_tokens: {max: 512}`."""
    from ruamel.yaml.comments import CommentedMap

    if not isinstance(value, dict):
        return value
    mapping = CommentedMap()
    for key, inner in value.items():
        if isinstance(inner, dict):
            leaf = CommentedMap(inner)
            leaf.fa.set_flow_style()
            mapping[key] = leaf
        else:
            mapping[key] = inner
    return mapping
