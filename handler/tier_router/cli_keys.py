"""`tier-router keys create NAME [--file F] [--tiers a,b] [--rules R] ...`: a router key.

The key is printed once (stdout); only its SHA-256 hash, name and limits are written to the
keys file, `.tier-router/keys.yaml` by default: outside `rules/`, which is packaged into the
Lambda artifact, and ignored by git. Serve with it: `TIER_ROUTER_KEYS_FILE=<file>`.

Exit 0 when the key is made; 2 for a bad argument (a name the file would refuse, a negative
limit, a tier the rules file does not define: `--tiers` is checked against `--rules`, default
$TIER_ROUTER_RULES or rules/router.yaml), each reported in one line; 1 when the file cannot be
read or written, or already holds a key of that name.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

NAME_RULE = "1-64 letters, digits, '.', '_' or '-', starting with a letter or digit"


def add_command(commands: Any) -> None:
    from tier_router.settings import DEFAULT_KEYS_FILE

    keys = commands.add_parser("keys", help="manage router keys (who may call the router)")
    key_commands = keys.add_subparsers(title="keys commands")
    create = key_commands.add_parser("create", help="create a key: prints it once, stores only its hash")
    create.add_argument("name", help=f"the key's name, shown in logs, counters and budgets ({NAME_RULE})")
    create.add_argument(
        "--file",
        type=Path,
        default=DEFAULT_KEYS_FILE,
        help=f"keys file to add it to (default {DEFAULT_KEYS_FILE})",
    )
    create.add_argument(
        "--print-only", action="store_true", help="print the entry instead of writing the file"
    )
    create.add_argument("--daily-usd", type=float, help="this key's daily budget (hard cap)")
    create.add_argument("--rpm", type=int, help="requests per minute")
    create.add_argument("--tpm", type=int, help="tokens per minute")
    create.add_argument("--tiers", help="comma-separated tiers this key may use (checked against --rules)")
    create.add_argument(
        "--rules",
        type=Path,
        help="rules file --tiers must name tiers of (default: $TIER_ROUTER_RULES or rules/router.yaml)",
    )
    create.set_defaults(run=run_keys_create)


def record_problem(exc: Any) -> str:
    """A `KeyRecord` validation error in the command's own terms (no pydantic text or URL)."""
    first = exc.errors(include_input=False)[0]
    field = str(first["loc"][0]) if first["loc"] else ""
    if field == "name":
        return f"invalid key name: use {NAME_RULE}"
    if field == "tiers":
        return "--tiers: name at least one tier"
    return f"--{field.replace('_', '-')}: {first['msg'].lower()}"


def unknown_tiers(tiers: list[str], rules_path: Path | None) -> str | None:
    """Why `--tiers` is refused: a tier the rules file does not define (or an unreadable file)."""
    from tier_router.routing.loader import RulesError, load_rules
    from tier_router.settings import default_rules_path

    path = rules_path or default_rules_path()
    try:
        known = list(load_rules(path).tiers)
    except RulesError:
        return f"--tiers is checked against {path}, which does not load: see `tier-router check {path}`"
    unknown = [t for t in tiers if t not in known]
    if not unknown:
        return None
    listed = ", ".join(repr(t) for t in unknown)
    return f"--tiers: unknown tier {listed} in {path} (its tiers: {', '.join(known)})"


def run_keys_create(args: argparse.Namespace) -> int:
    import yaml
    from pydantic import ValidationError

    from tier_router.keys_file import append_key, validated_record
    from tier_router.router_keys import KeysError, hash_key, new_key

    tiers = [t.strip() for t in args.tiers.split(",") if t.strip()] if args.tiers is not None else None
    secret = new_key()
    try:
        record = validated_record(
            name=args.name,
            sha256=hash_key(secret),
            daily_usd=args.daily_usd,
            rpm=args.rpm,
            tpm=args.tpm,
            tiers=tiers,
        )
    except ValidationError as exc:
        print(f"cannot create key: {record_problem(exc)}", file=sys.stderr)
        return 2
    problem = unknown_tiers(tiers, args.rules) if tiers else None
    if problem:
        print(f"cannot create key: {problem}", file=sys.stderr)
        return 2
    if args.print_only:
        entry = yaml.safe_dump({"keys": [record.as_dict()]}, sort_keys=False)
        print(entry, end="", file=sys.stderr)
    else:
        try:
            append_key(args.file, record)
        except (KeysError, OSError) as exc:
            print(f"cannot create key: {exc}", file=sys.stderr)
            return 1
        print(
            f"added {args.name!r} to {args.file}; serve with TIER_ROUTER_KEYS_FILE={args.file}",
            file=sys.stderr,
        )
    print("The key (shown once; only its hash is stored):", file=sys.stderr)
    print(secret)
    return 0
