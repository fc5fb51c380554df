"""What can be checked here of the blocks that cannot run here (tests/docs/coverage.py, EXEMPT).

Each check takes the block and raises AssertionError on a claim the repository contradicts:
`sam` commands name the template's resources, parameters and the stack name samconfig.toml.example
gives; `aws ssm` parameter names are the template's defaults; `tier-router` commands in those
blocks run here (in `workdir`), since they need no account.
"""

from __future__ import annotations

import re
import shlex
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from tests.docs.blocks import ROOT, Block, sh_commands


class TemplateLoader(yaml.SafeLoader):
    """template.yaml with its CloudFormation tags (`!Ref`, `!Sub`, ...) read as plain values."""


TemplateLoader.add_multi_constructor("!", lambda loader, suffix, node: None)


def template() -> dict[str, Any]:
    return yaml.load((ROOT / "template.yaml").read_text(encoding="utf-8"), Loader=TemplateLoader)  # noqa: S506


def samconfig() -> dict[str, Any]:
    return tomllib.loads((ROOT / "samconfig.toml.example").read_text(encoding="utf-8"))


def api_key_envs() -> set[str]:
    rules = yaml.safe_load((ROOT / "rules" / "router.yaml").read_text(encoding="utf-8"))
    return {p["api_key_env"] for p in rules["providers"].values() if p.get("api_key_env")}


def parameter_default(name: str) -> str:
    return str(template()["Parameters"][name]["Default"])


def options(argv: list[str]) -> dict[str, str | bool]:
    """`--flag value` / `--flag` pairs of an argv tail."""
    found: dict[str, str | bool] = {}
    i = 0
    while i < len(argv):
        word = argv[i]
        assert word.startswith("--"), f"unexpected argument {word!r} in {argv}"
        if i + 1 < len(argv) and not argv[i + 1].startswith("--"):
            found[word] = argv[i + 1]
            i += 2
        else:
            found[word] = True
            i += 1
    return found


# -- per command ------------------------------------------------------------------------------

SAM_SUBCOMMANDS = {"build", "deploy", "logs", "delete", "validate"}


def check_sam(argv: list[str], _: Path) -> None:
    data = template()
    assert argv[1] in SAM_SUBCOMMANDS, argv
    given = options(argv[2:])
    stack = given.get("--stack-name")
    if stack is not None:
        assert stack == samconfig()["default"]["global"]["parameters"]["stack_name"], stack
    if "--name" in given:  # sam logs --name <logical id of a function>
        resource = data["Resources"][given["--name"]]
        assert resource["Type"] == "AWS::Serverless::Function"
    overrides = given.get("--parameter-overrides")
    if isinstance(overrides, str):
        for pair in overrides.split():
            assert pair.split("=", 1)[0] in data["Parameters"], pair
    env = given.get("--config-env")
    if env is not None:  # an environment of samconfig.toml.example, its parameters the template's
        assert env in samconfig(), env
        for pair in samconfig()[str(env)]["deploy"]["parameters"]["parameter_overrides"]:
            assert pair.split("=", 1)[0] in data["Parameters"], pair


def check_aws(argv: list[str], workdir: Path) -> None:
    service, action, *rest = argv[1:]
    given = options(rest)
    if service == "ssm":
        assert action in {"put-parameter", "delete-parameter"}, action
        name = str(given["--name"])
        keys, prefix = parameter_default("KeysParameterName"), parameter_default("SecretsPrefix")
        if name != keys:
            assert name.startswith(prefix), name
            assert name.removeprefix(prefix) in api_key_envs(), name
        if action == "put-parameter":
            assert given["--type"] == "SecureString"
            value = str(given["--value"])
            if value.startswith("file://"):
                assert name == keys
                written = yaml.safe_load((workdir / value.removeprefix("file://")).read_text())
                assert written["keys"], written
                assert all("sha256" in k for k in written["keys"]), written
        return
    if service == "cloudformation":
        assert action == "describe-stacks"
        assert given["--stack-name"] == samconfig()["default"]["global"]["parameters"]["stack_name"]
        outputs = re.findall(r"OutputKey=='(\w+)'", str(given["--query"]))
        assert outputs, given["--query"]
        assert set(outputs) <= set(template()["Outputs"]), outputs
        return
    if service == "lambda":  # SnapStart's alias and versions (docs/regions.md)
        assert action in {"update-alias", "delete-function"}, action
        assert given["--function-name"] == "<function>", given
        if action == "update-alias":
            alias = template()["Resources"]["RouterFunction"]["Properties"]["AutoPublishAlias"]
            assert alias is None  # a condition (read as None here): SnapStart=On gives `live`
            assert "AutoPublishAlias: !If [IsSnapStart, live," in (ROOT / "template.yaml").read_text()
            assert given["--name"] == "live", given
            assert given["--function-version"] == "<previous>", given
        else:
            assert given["--qualifier"] == "<version>", given
        return
    raise AssertionError(f"no check for `aws {service} {action}`")


def check_tier_router(argv: list[str], workdir: Path) -> None:
    from tests.docs.test_offline_blocks import shell  # the same launcher as the runnable blocks

    done = shell(shlex.join(argv), workdir)
    assert done.returncode == 0, (argv, done.stderr)


def check_curl(argv: list[str], _: Path) -> None:
    url = next(word for word in argv if word.startswith("https://"))
    assert re.fullmatch(r"https://<id>\.lambda-url\.<region>\.on\.aws/v1/chat/completions", url), url
    assert any(word.startswith("authorization: Bearer ") for word in argv)


def check_cp(argv: list[str], _: Path) -> None:
    """`cp samconfig.toml.example samconfig.toml`: the example, to where `sam` reads its config."""
    assert argv[1:] == ["samconfig.toml.example", "samconfig.toml"], argv
    assert (ROOT / argv[1]).is_file()


PROGRAMS: dict[str, Callable[[list[str], Path], None]] = {
    "cp": check_cp,
    "sam": check_sam,
    "aws": check_aws,
    "tier-router": check_tier_router,
    "curl": check_curl,
}


def commands(block: Block) -> list[list[str]]:
    argvs = []
    for command in sh_commands(block.text):
        for part in command.split(" && "):
            argvs.append(shlex.split(part))
    return argvs


# -- the checks the exemption table names ------------------------------------------------------


def aws_commands_match_the_template(block: Block, workdir: Path) -> None:
    """Every command is one this module knows how to check, and it passes its check."""
    for argv in commands(block):
        assert argv[0] in PROGRAMS, f"{block}: no check for `{argv[0]}`"
        PROGRAMS[argv[0]](argv, workdir)


def serve_script_takes_these_arguments(block: Block, workdir: Path) -> None:
    from tier_router.cli import build_parser

    (argv,) = commands(block)
    assert argv[0] == "./scripts/serve"
    script = (ROOT / "scripts" / "serve").read_text(encoding="utf-8")
    assert 'exec tier-router serve "$@"' in script
    args = build_parser().parse_args(["serve", *argv[1:]])
    assert (ROOT / args.rules).is_file(), args.rules


def script_runs_the_tests(block: Block, workdir: Path) -> None:
    (argv,) = commands(block)
    script = ROOT / argv[0]
    assert script.is_file(), script
    assert script.stat().st_mode & 0o111, script
    assert "pytest" in script.read_text(encoding="utf-8")


def python_compiles_with_the_documented_base_url(block: Block, workdir: Path) -> None:
    compile(block.text, str(block), "exec")
    (base_url,) = re.findall(r'base_url="([^"]+)"', block.text)
    assert base_url.endswith("/v1"), base_url
    local, lambda_url = r"http://127\.0\.0\.1:8080/v1", r"https://<id>\.lambda-url\.<region>\.on\.aws/v1"
    assert re.fullmatch(f"{local}|{lambda_url}", base_url), base_url


def diagram_follows_the_request_path(block: Block, workdir: Path) -> None:
    """The picture's stages in docs' order: DESIGN's request path (auth → ... → response)."""
    stages = ["client", "auth", "parse", "decide", "state", "forward", "account", "response"]
    nodes = re.findall(r"^\s*(\w+)\[", block.text, flags=re.M) + re.findall(r"-->\s*(\w+)\[", block.text)
    order = [n for n in dict.fromkeys(nodes) if n in stages]
    assert order == stages, order
    assert "dynamodb" in block.text
    assert "x-router-" in block.text


def tracing_commands_use_the_documented_settings(block: Block, workdir: Path) -> None:
    """docs/tracing.md's `Turn it on`: the extra exists, the exported variables turn tracing on
    and point it where the comment says, and the serve command parses."""
    from tier_router.cli import build_parser
    from tier_router.settings import Settings

    argvs = commands(block)
    programs = [argv[0] for argv in argvs]
    assert programs == ["pip", "export", "export", "tier-router"], programs
    extra = re.fullmatch(r"tier-router\[(\w+)\]", argvs[0][2])
    assert argvs[0][1] == "install", argvs[0]
    assert extra, argvs[0]
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert extra.group(1) in pyproject["project"]["optional-dependencies"]
    environ = dict(argv[1].split("=", 1) for argv in argvs[1:3])
    settings = Settings.from_env(environ)
    assert settings.otel, environ
    assert settings.otel_endpoint == environ["OTEL_EXPORTER_OTLP_ENDPOINT"] + "/v1/traces"
    args = build_parser().parse_args(argvs[3][1:])
    assert (ROOT / args.rules).is_file(), args.rules


def samconfig_overrides_the_template_takes(block: Block, workdir: Path) -> None:
    """`"Name=value",` lines of samconfig.toml's parameter_overrides: each a template parameter,
    its value one the template allows."""
    data = template()["Parameters"]
    pairs = re.findall(r'^"(\w+)=([^"]*)",', block.text, flags=re.M)
    assert pairs, block.text
    assert len(pairs) == len(block.text.strip().splitlines()), block.text
    for name, value in pairs:
        spec = data[name]
        if "AllowedValues" in spec:
            assert value in [str(v) for v in spec["AllowedValues"]], (name, value)
        # a CommaDelimitedList's pattern applies to each space-trimmed member
        members = [m.strip() for m in value.split(",")] if spec["Type"] == "CommaDelimitedList" else [value]
        if "AllowedPattern" in spec:
            assert all(re.fullmatch(spec["AllowedPattern"], m) for m in members), (name, value)


def run(check: str, block: Block, workdir: Path) -> None:
    checks: dict[str, Any] = globals()
    checks[check](block, workdir)
