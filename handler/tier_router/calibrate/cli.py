"""The `calibrate` subcommand's arguments; the work is in the package's modules."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
from pathlib import Path
from typing import Any


def add_command(commands: Any) -> None:
    calibrate = commands.add_parser(
        "calibrate", help="write rules that meet a quality target at the lowest cost, from labels"
    )
    calibrate.add_argument("labels", type=Path, help='labels (JSONL: {"request"|"features", "scores"})')
    calibrate.add_argument(
        "--rules", type=Path, help="rules file (default: $TIER_ROUTER_RULES or rules/router.yaml)"
    )
    calibrate.add_argument(
        "--target",
        type=float,
        required=True,
        help="expected quality to keep, as a share of always using the best tier (e.g. 0.95)",
    )
    calibrate.add_argument("--out", type=Path, help="write the calibrated rules file here")
    calibrate.add_argument("--json", action="store_true", help="print one JSON object")
    calibrate.add_argument(
        "--holdout", type=float, default=0.3, help="share of labels held out to check the rules (default 0.3)"
    )
    calibrate.add_argument("--seed", type=int, default=0, help="seed of the split (default 0)")
    calibrate.set_defaults(run=run_calibrate)


def run_calibrate(args: argparse.Namespace) -> int:
    from tier_router.calibrate.refusal import Refused
    from tier_router.calibrate.report import as_json, new_rules, render_text
    from tier_router.calibrate.run import calibrate
    from tier_router.routing.loader import RulesError, load_rules
    from tier_router.settings import default_rules_path

    rules_path = Path(args.rules or default_rules_path())
    try:
        rules = load_rules(rules_path)
        source = rules_path.read_text(encoding="utf-8")
    except RulesError as exc:
        print(exc, file=sys.stderr)
        return 1
    try:
        cal = calibrate(args.labels, rules, args.target, args.holdout, args.seed)
        written_rules = new_rules(cal, dt.datetime.now(dt.UTC).date().isoformat())
        written = str(args.out) if args.out else None
        if args.out:
            write_checked(args.out, source, written_rules)
    except Refused as exc:
        if args.json:
            print(json.dumps({"refused": str(exc)}))
        print(f"calibrate: refused, no rules written: {exc}", file=sys.stderr)
        return 1
    default_tier = rules.spec.default_tier
    if args.json:
        print(json.dumps(as_json(cal, written_rules, written, default_tier)))
    else:
        print(render_text(cal, written_rules, written, default_tier))
    return 0


def write_checked(out: Path, source: str, rules: list[Any]) -> None:
    """Write the rules file only if it loads (`tier-router check`'s loader); else Refused."""
    from tier_router.calibrate.refusal import Refused
    from tier_router.calibrate.writer import with_rules
    from tier_router.routing.loader import RulesError, load_rules

    try:
        text = with_rules(source, rules)
    except ImportError:
        raise Refused("--out needs ruamel.yaml: pip install 'tier-router[calibrate]'") from None
    except ValueError as exc:
        raise Refused(f"cannot edit the rules file: {exc}") from None
    scratch = out.with_name(f".{out.name}.calibrate-{os.getpid()}")
    try:
        scratch.write_text(text, encoding="utf-8")
        load_rules(scratch)
        os.replace(scratch, out)
    except RulesError as exc:
        raise Refused(f"the calibrated file would not load: {exc}") from None
    except OSError as exc:
        raise Refused(f"cannot write {out}: {exc.strerror or exc}") from None
    finally:
        scratch.unlink(missing_ok=True)
