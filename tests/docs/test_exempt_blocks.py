"""The blocks that cannot run here (tests/docs/coverage.py, EXEMPT), checked as far as they can
be: each by the check its exemption names (tests/docs/exempt_checks.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.docs import exempt_checks
from tests.docs.blocks import ROOT, Block, blocks, parse
from tests.docs.coverage import EXEMPT

EXEMPTED = [b for b in blocks() if b.key in EXEMPT]


def workdir(tmp_path: Path) -> Path:
    (tmp_path / "rules").symlink_to(ROOT / "rules")
    return tmp_path


@pytest.mark.parametrize("block", EXEMPTED, ids=str)
def test_what_can_be_checked_here(block: Block, tmp_path: Path) -> None:
    exempt_checks.run(EXEMPT[block.key].check, block, workdir(tmp_path))


def sh(text: str) -> Block:
    (block,) = parse("README.md", f"```sh\n{text}\n```\n")
    return block


@pytest.mark.parametrize(
    "text",
    [
        "aws ssm put-parameter --name /tier-router/providers/NO_SUCH_KEY --type SecureString --value x",
        "aws ssm put-parameter --name /router/keys --type SecureString --value file://keys.yaml",
        "sam logs --stack-name tier-router --name NoSuchFunction --tail",
        "sam delete --stack-name another-stack",
        "sam deploy --parameter-overrides NoSuchParameter=1",
        "aws cloudformation describe-stacks --stack-name tier-router"
        " --query \"Stacks[0].Outputs[?OutputKey=='Url']\"",
        "tier-router keys create 'bad name!' --file .tier-router/keys.yaml",
        "docker run tier-router",
    ],
)
def test_a_wrong_name_fails_its_check(text: str, tmp_path: Path) -> None:
    with pytest.raises((AssertionError, KeyError)):
        exempt_checks.aws_commands_match_the_template(sh(text), workdir(tmp_path))
