"""Run by tests/deploy/test_sam_transform.py with the SAM CLI's Python (its `samtranslator`):
template.yaml through SAM's own transform, offline, for the given parameter values — once as
is without AWS::LanguageExtensions, once with the function's conditional properties resolved
first, as AWS::LanguageExtensions does before the SAM transform. Prints one JSON object."""

from __future__ import annotations

import copy
import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from samtranslator.public.exceptions import InvalidDocumentException  # noqa: E402
from samtranslator.translator.transform import transform  # noqa: E402

from tests.support.cfn_template import Resolved, load  # noqa: E402

CONDITIONAL = ("AutoPublishAlias", "SnapStart")


class NoManagedPolicies:
    def load(self) -> dict[str, str]:
        return {}


def translate(template: dict[str, Any], parameters: dict[str, str]) -> dict[str, Any]:
    try:
        out = transform(copy.deepcopy(template), parameters, NoManagedPolicies())
    except InvalidDocumentException as exc:
        return {"refused": [str(cause) for cause in exc.causes]}
    lambda_resources = {
        name: r for name, r in out["Resources"].items() if r["Type"].startswith("AWS::Lambda::")
    }
    return {"resources": lambda_resources}


def rules_through_sam(template: dict[str, Any], parameters: dict[str, str]) -> Any:
    """The template's `Rules` as SAM's transform hands them on to CloudFormation (or its refusal)."""
    try:
        return transform(copy.deepcopy(template), parameters, NoManagedPolicies()).get("Rules")
    except InvalidDocumentException as exc:
        return {"refused": [str(cause) for cause in exc.causes]}


def main() -> None:
    parameters = json.loads(sys.argv[1])
    template = load()
    template["Resources"]["RouterFunction"]["Properties"]["CodeUri"] = "s3://bucket/router.zip"  # packaged
    rules = template.pop("Rules", None)  # CloudFormation checks rules, not the SAM transform
    sam_only = copy.deepcopy(template)
    sam_only["Transform"] = "AWS::Serverless-2016-10-31"
    extended = copy.deepcopy(sam_only)
    function = extended["Resources"]["RouterFunction"]["Properties"]
    resolved = Resolved(template, **parameters)
    for name in CONDITIONAL:  # Fn::If over a parameter's condition, AWS::NoValue dropped
        value = resolved.value(function[name])
        if isinstance(value, str | dict) and value:
            function[name] = value
        else:
            del function[name]
    print(
        json.dumps(
            {
                "transform": template["Transform"],
                "sam_only": translate(sam_only, parameters),
                "language_extensions_first": translate(extended, parameters),
                "rules": rules,
                "rules_through_sam": rules_through_sam({**extended, "Rules": rules}, parameters),
            }
        )
    )


if __name__ == "__main__":
    main()
