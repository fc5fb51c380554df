"""Blocks of the reference pages that show a situation rather than a command to paste: each is
rebuilt here (the broken file, the pull request, the keys) and compared with the real thing."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import yaml
from tier_router.cli import build_parser, main

from tests.docs.blocks import ROOT, block, same_output, sh_commands
from tests.docs.test_offline_blocks import scratch, shell

HANDLER = ROOT / "handler" / "tier_router"


def test_the_layout_names_every_module() -> None:
    """docs/design.md: every module and package of handler/tier_router/ is in the layout."""
    layout = block("docs/design.md", "Layout").text.split("\nrules/", 1)[0]  # handler/tier_router/
    named = set(re.findall(r"\b([a-z_]+(?:\.py|/))", layout))
    modules = {
        p.name + "/" if p.is_dir() else p.name
        for p in HANDLER.iterdir()
        if (p.suffix == ".py" and p.name != "__init__.py") or (p.is_dir() and (p / "__init__.py").exists())
    }
    assert modules - named == set(), "modules the layout does not name"
    existing = {p.name for p in HANDLER.rglob("*.py")}
    assert {m for m in named if m.endswith(".py")} <= existing, "the layout names modules that are gone"


def test_the_load_error_example(tmp_path: Path) -> None:
    """docs/rules.md: rule #6 given `(a)\\1`, rule #9 the tier `cheap` — what `check` prints."""
    shown = block("docs/rules.md", "The rules file", 2).text.splitlines()
    rules = yaml.safe_load((ROOT / "rules" / "router.yaml").read_text(encoding="utf-8"))
    code, short = rules["rules"][5], rules["rules"][8]
    assert (code["name"], short["name"]) == ("code", "short-chat")
    code["when"] = {"last_user_matches": r"(a)\1"}
    short["tier"] = "cheap"
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "router.yaml").write_text(yaml.safe_dump(rules, sort_keys=False))
    done = shell("tier-router check rules/router.yaml", tmp_path)
    assert done.returncode == 1
    assert same_output(shown, done.stderr.splitlines()) is None, done.stderr


def test_the_replay_against_example(tmp_path: Path) -> None:
    """docs/replay.md: a pull request that moves `tools-and-json` to the budget tier, replayed
    against main's file (here the shipped file plays main, written where `git show` writes it)."""
    command_block = block("docs/replay.md", "Cost audit: tier-router replay", 2)
    shown = block("docs/replay.md", "Cost audit: tier-router replay", 3).text.splitlines()
    git_show, replay = sh_commands(command_block.text)
    main_path = re.fullmatch(r"git show main:rules/router\.yaml > (\S+)", git_show)
    assert main_path is not None, git_show
    shipped = (ROOT / "rules" / "router.yaml").read_text(encoding="utf-8")
    rule = shipped.index("- name: tools-and-json")
    tier = shipped.index("tier: standard", rule)
    assert tier < shipped.index("- name:", rule + 1)
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "samples").symlink_to(ROOT / "rules" / "samples")
    pr = shipped[:tier] + "tier: budget" + shipped[tier + len("tier: standard") :]
    (tmp_path / "rules" / "router.yaml").write_text(pr, encoding="utf-8")
    (tmp_path / "main.yaml").write_text(shipped, encoding="utf-8")
    done = shell(replay.replace(main_path.group(1), "main.yaml"), tmp_path)
    assert done.returncode == 0, done.stderr
    changes = done.stdout[done.stdout.index("changes vs ") :].splitlines()
    documented = [line.replace(main_path.group(1), "main.yaml") for line in shown]
    assert same_output([*documented, "..."], changes) is None, "\n".join(changes[:6])


def test_the_router_keys_example(tmp_path: Path) -> None:
    """docs/spend.md: `keys create` writes the file the next line serves with (run here), and
    `./scripts/serve` takes that line's arguments and variable."""
    create, serve = sh_commands(block("docs/spend.md", "Router keys").text)
    cwd = scratch(tmp_path)
    done = shell(create, cwd)
    assert done.returncode == 0, done.stderr
    assert re.search(r"\btrk-[\w-]{20,}", done.stdout), "the key is printed"
    variable, path = serve.split()[0].split("=")
    assert variable == "TIER_ROUTER_KEYS_FILE"
    (record,) = yaml.safe_load((cwd / path).read_text())["keys"]
    assert (record["name"], record["daily_usd"], record["rpm"], record["tiers"]) == (
        "team-a",
        20,
        600,
        ["budget", "standard"],
    )
    argv = shlex.split(serve)[1:]
    assert argv[0] == "./scripts/serve"
    args = build_parser().parse_args(["serve", *argv[1:]])
    assert args.host == "0.0.0.0"
    settings = (ROOT / "handler" / "tier_router" / "settings.py").read_text(encoding="utf-8")
    assert f'"{variable}"' in settings


def test_replay_progress_is_what_the_page_says(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """docs/replay.md: with `--progress` (stderr not a terminal), progress lines past 5,000
    lines, and the final count always: a shorter log shows only that."""
    text = " ".join((ROOT / "docs" / "replay.md").read_text(encoding="utf-8").split())
    assert "once a log passes 5,000 lines, a progress line is updated as it is read" in text
    assert "the final count is always printed at the end (a shorter log shows only that)" in text
    sample = (ROOT / "rules" / "samples" / "requests.jsonl").read_text(encoding="utf-8").splitlines()
    monkeypatch.chdir(scratch(tmp_path))
    Path("short.jsonl").write_text("\n".join((sample * 3)[:4_999]) + "\n")
    Path("long.jsonl").write_text("\n".join((sample * 3)[:5_200]) + "\n")
    assert main(["replay", "short.jsonl", "--progress"]) == 0
    assert re.findall(r"replay: [\d,]+ lines", capsys.readouterr().err) == ["replay: 4,999 lines"]
    assert main(["replay", "long.jsonl", "--progress"]) == 0
    assert re.search(r"replay: 5,\d{3} lines", capsys.readouterr().err)
