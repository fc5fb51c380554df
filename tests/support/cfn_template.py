"""template.yaml as CloudFormation resolves it for given parameter values: short tags read as
the intrinsic functions they stand for, conditions evaluated, `Fn::If` branches chosen,
`AWS::NoValue` dropped, resources whose condition is false left out, parameter references
(and `Fn::Sub`/`Fn::Select`/`Fn::Split`/`Fn::Join` over them) substituted; a CommaDelimitedList
parameter is a list; the rule functions `Fn::Contains` and `Fn::EachMemberEquals` evaluated.
References to resources and their attributes stay as they are. The SAM transform itself is not
run (`sam validate --lint`, .ci/sam.sh, checks that part)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
PSEUDO = {
    "AWS::Region": "us-east-1",
    "AWS::StackName": "tier-router",
    "AWS::AccountId": "123456789012",
    "AWS::Partition": "aws",
    "AWS::URLSuffix": "amazonaws.com",
}
NO_VALUE = object()


class CfnLoader(yaml.SafeLoader):
    """`!Ref X` -> {"Ref": X}, `!GetAtt A.B` -> {"Fn::GetAtt": [A, B]}, `!Name v` -> {"Fn::Name": v}."""


def _tag(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> dict[str, Any]:
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]
    if suffix in ("Ref", "Condition"):
        return {suffix: value}
    if suffix == "GetAtt" and isinstance(value, str):
        value = value.split(".", 1)
    return {f"Fn::{suffix}": value}


CfnLoader.add_multi_constructor("!", _tag)


def load(text: str | None = None) -> dict[str, Any]:
    source = (ROOT / "template.yaml").read_text(encoding="utf-8") if text is None else text
    return yaml.load(source, Loader=CfnLoader)  # noqa: S506 - SafeLoader with tag constructors


class Resolved:
    """One template resolved for one set of parameter values (defaults for the rest)."""

    def __init__(self, data: dict[str, Any], **given: str) -> None:
        unknown = set(given) - set(data["Parameters"])
        assert not unknown, f"no such parameters: {unknown}"
        defaults = {name: str(spec.get("Default", "")) for name, spec in data["Parameters"].items()}
        text = {**defaults, **given}
        lists = {name for name, spec in data["Parameters"].items() if spec["Type"] == "CommaDelimitedList"}
        # A CommaDelimitedList is a list, each member space-trimmed (CloudFormation's reading).
        typed = {name: [s.strip() for s in v.split(",")] if name in lists else v for name, v in text.items()}
        self.parameters: dict[str, Any] = {**PSEUDO, **typed}
        self.conditions = data.get("Conditions", {})
        self.resources = {
            name: self.value({k: v for k, v in resource.items() if k != "Condition"})
            for name, resource in data["Resources"].items()
            if "Condition" not in resource or self.condition(resource["Condition"])
        }
        self.outputs = {
            name: self.value(output["Value"])
            for name, output in data.get("Outputs", {}).items()
            if "Condition" not in output or self.condition(output["Condition"])
        }

    def condition(self, name: str) -> bool:
        return bool(self.value(self.conditions[name]))

    def value(self, node: Any) -> Any:
        if isinstance(node, list):
            return [v for v in (self.value(item) for item in node) if v is not NO_VALUE]
        if not isinstance(node, dict):
            return node
        if len(node) == 1:
            [(name, arg)] = node.items()
            if name == "Ref":
                if arg == "AWS::NoValue":
                    return NO_VALUE
                return self.parameters.get(arg, node)
            if name == "Condition":
                return self.condition(arg)
            if name == "Fn::If":
                return self.value(arg[1] if self.condition(arg[0]) else arg[2])
            if name in ("Fn::Equals", "Fn::Not", "Fn::And", "Fn::Or"):
                values = [self.value(a) for a in arg]
                if name == "Fn::Equals":
                    return values[0] == values[1]
                if name == "Fn::Not":
                    return not values[0]
                return all(values) if name == "Fn::And" else any(values)
            if name == "Fn::Sub":
                return self.sub(arg)
            if name == "Fn::Split":
                delimiter, text = arg[0], self.value(arg[1])
                return text.split(delimiter) if isinstance(text, str) else {name: [delimiter, text]}
            if name == "Fn::Join":
                delimiter, items = arg[0], self.value(arg[1])
                if isinstance(items, list) and all(isinstance(i, str) for i in items):
                    return delimiter.join(items)
                return {name: [delimiter, items]}
            if name == "Fn::Contains":  # rules: a string in a list of strings
                return self.value(arg[1]) in self.value(arg[0])
            if name == "Fn::EachMemberEquals":  # rules: every member of a list is the string
                return all(item == self.value(arg[1]) for item in self.value(arg[0]))
            if name == "Fn::Select":
                index, items = int(arg[0]), self.value(arg[1])
                return items[index] if isinstance(items, list) else {name: [index, items]}
        resolved = {k: self.value(v) for k, v in node.items()}
        return {k: v for k, v in resolved.items() if v is not NO_VALUE}

    def sub(self, arg: Any) -> Any:
        """Parameters substituted; `${Resource}` and `${Resource.Attr}` left for CloudFormation."""
        text, names = (arg, {}) if isinstance(arg, str) else (arg[0], self.value(arg[1]))
        values = {**self.parameters, **names}

        def one(match: re.Match[str]) -> str:
            value = values.get(match.group(1))
            return value if isinstance(value, str) else match.group(0)

        done = re.sub(r"\$\{([A-Za-z0-9_:.]+)\}", one, text)
        return done if "${" not in done else {"Fn::Sub": done}
