"""The `tier-router` command line.

Subcommands import what they need lazily: `check` and `explain` run in CI and in editors
and should not pay for the HTTP stack.

The CLI reads no environment itself: `Settings.from_env()` does, and flags replace fields
of the result (`tier_router.serve` for `serve`).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tier_router import cli_keys, cli_labels, cli_quality, cli_text
from tier_router.calibrate import cli as calibrate_cli
from tier_router.settings import Settings, configured_store_url, default_rules_path


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "run"):
        parser.print_help()
        return 2
    try:
        return int(args.run(args) or 0)
    except BrokenPipeError:  # e.g. `tier-router explain ... | head`
        return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tier-router", description="LLM routing gateway.")
    commands = parser.add_subparsers(title="commands")

    check = commands.add_parser("check", help="validate a rules file and run its golden examples")
    check.add_argument(
        "path", nargs="?", type=Path, help="rules file (default: $TIER_ROUTER_RULES or rules/router.yaml)"
    )
    check.add_argument("--examples", type=Path, help="examples file (default: beside the rules file)")
    check.set_defaults(run=run_check)

    compile_ = commands.add_parser(
        "compile", help="validate rules files and write their compiled forms (fast Lambda start-up)"
    )
    compile_.add_argument("paths", nargs="+", type=Path, help="rules files (each gets <file>.compiled.json)")
    compile_.set_defaults(run=run_compile)

    explain = commands.add_parser("explain", help="show how one request would be routed (calls no provider)")
    explain.add_argument("prompt", nargs="?", help="the last user message")
    explain.add_argument(
        "--request",
        type=Path,
        help="a chat-completions or embeddings request body (JSON file, - for stdin)",
    )
    explain.add_argument("--system", help="a system prompt to send with PROMPT")
    explain.add_argument(
        "--embedding", action="store_true", help="PROMPT is an embeddings input (POST /v1/embeddings)"
    )
    explain.add_argument("--model", default="auto", help="requested model: auto (default), a tier or a model")
    explain.add_argument(
        "--header", action="append", default=[], metavar="K=V", help="a request header; repeatable"
    )
    explain.add_argument(
        "--rules", type=Path, help="rules file (default: $TIER_ROUTER_RULES or rules/router.yaml)"
    )
    explain.add_argument(
        "--key", help="the router key's name the request comes with (places it in splits and experiments)"
    )
    explain.add_argument("--json", action="store_true", help="print the decision as one JSON object")
    explain.add_argument(
        "--store", help="state store URL to show breaker states (default: $TIER_ROUTER_STORE, if set)"
    )
    explain.set_defaults(run=run_explain)

    serve = commands.add_parser("serve", help="run the router locally (uvicorn)")
    serve.add_argument("--host", default="127.0.0.1", help="interface to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8080)
    serve.add_argument(
        "--rules", type=Path, help="rules file (default: $TIER_ROUTER_RULES or rules/router.yaml)"
    )
    serve.add_argument("--store", help="state store URL (default: $TIER_ROUTER_STORE or a local SQLite file)")
    serve.add_argument("--workers", type=int, default=1, help="worker processes (they share the store)")
    serve.add_argument("--log-level", default="info")
    serve.add_argument(
        "--insecure-no-auth",
        action="store_true",
        help="allow serving on a non-loopback address without router keys (never in production)",
    )
    serve.set_defaults(run=run_serve)

    cli_keys.add_command(commands)

    status = commands.add_parser("status", help="today's spend and the breaker states, from the state store")
    status.add_argument(
        "--rules", type=Path, help="rules file (default: $TIER_ROUTER_RULES or rules/router.yaml)"
    )
    status.add_argument(
        "--store", help="state store URL (default: $TIER_ROUTER_STORE or the local SQLite file)"
    )
    status.add_argument(
        "--regions",
        help="on a table several regions share: more regions to read, comma-separated"
        " (default: this one and those of budgets.region_shares)",
    )
    status.add_argument(
        "--days",
        type=int,
        default=14,
        help="budget days of the token and cost trend per model and rule (default 14, at most 366)",
    )
    status.add_argument("--json", action="store_true", help="print one JSON object")
    status.set_defaults(run=run_status)

    probe = commands.add_parser(
        "probe", help="check every provider once, record the results on the breakers (exit 1: one is down)"
    )
    probe.add_argument(
        "--rules", type=Path, help="rules file (default: $TIER_ROUTER_RULES or rules/router.yaml)"
    )
    probe.add_argument(
        "--store", help="state store URL (default: $TIER_ROUTER_STORE or the local SQLite file)"
    )
    probe.add_argument("--json", action="store_true", help="print one JSON object")
    probe.set_defaults(run=run_probe)

    replay = commands.add_parser(
        "replay", help="re-route a request log through the rules and report cost (calls no provider)"
    )
    replay.add_argument("log", help="JSONL request log (.gz ok, - for stdin)")
    replay.add_argument(
        "--rules", type=Path, help="rules file (default: $TIER_ROUTER_RULES or rules/router.yaml)"
    )
    replay.add_argument("--against", type=Path, help="older rules file: report the requests that change tier")
    replay.add_argument("--baseline", metavar="MODEL", help="price everything at MODEL (default: dearest)")
    replay.add_argument("--model", help="route every request as if it named MODEL (e.g. auto)")
    replay.add_argument("--json", action="store_true", help="print the report as one JSON object")
    replay.add_argument("--html", type=Path, metavar="FILE", help="also write a self-contained HTML report")
    replay.add_argument("--progress", action="store_true", help="progress on stderr even if not a terminal")
    replay.add_argument("--list", type=int, default=50, metavar="N", help="list up to N changed requests")
    replay.set_defaults(run=run_replay)

    cli_quality.add_command(commands)
    cli_labels.add_command(commands)
    calibrate_cli.add_command(commands)
    return parser


def run_replay(args: argparse.Namespace) -> int:
    from tier_router.replay import ReplayError, render_html, render_text, replay

    rules_path = args.rules or default_rules_path()
    rules = load_or_report(rules_path)
    against = load_or_report(args.against) if args.against else None
    if rules is None or (args.against and against is None):
        return 1
    try:
        data = replay(
            args.log,
            rules,
            baseline=args.baseline,
            against=against,
            model=args.model,
            list_limit=max(args.list, 0),
            progress=True if args.progress else None,
            rules_path=str(rules_path),
            against_path=str(args.against) if args.against else None,
        )
        if args.html:
            args.html.write_text(render_html(data), encoding="utf-8")
    except (ReplayError, OSError) as exc:
        print(f"replay: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(data) if args.json else render_text(data))
    lines = data["lines"]
    if lines["total"] > lines["blank"] + lines["quality"] and not data["totals"]["requests"]:
        print("replay: no line of the log could be replayed", file=sys.stderr)
        return 1
    return 0


def run_status(args: argparse.Namespace) -> int:
    import asyncio

    from tier_router.errors import StoreError
    from tier_router.spend import trend
    from tier_router.spend.counters import MAX_DAYS
    from tier_router.status import read_status
    from tier_router.store.factory import StoreURLError, check_store_url, open_store

    if not 1 <= args.days <= MAX_DAYS:
        print(f"status: --days must be 1..{MAX_DAYS}, not {args.days}", file=sys.stderr)
        return 2
    rules = load_or_report(args.rules)
    if rules is None:
        return 1
    settings = Settings.from_env()
    store_url = args.store or settings.store_url
    regions = [r.strip() for r in (args.regions or "").split(",") if r.strip()]

    async def read() -> dict[str, Any]:
        store = open_store(store_url, settings=settings)
        try:
            return await read_status(store, rules, settings.region, regions, args.days)
        finally:
            await store.aclose()

    try:
        check_store_url(store_url)
    except StoreURLError as exc:
        print(f"status: {exc}", file=sys.stderr)
        return 2
    try:
        data = asyncio.run(read())
    except StoreError as exc:
        print(f"cannot read the state store {store_url}: {exc}", file=sys.stderr)
        return 1
    except ValueError as exc:  # a region without a share of budgets.region_shares
        print(f"status: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(data))
    elif "regions" in data:
        print(cli_text.render_regions(data))
        for name, region in data["regions"].items():
            print(f"== trend of region {name}\n{trend.render(region['trend'])}")
    else:
        print(cli_text.render_status(data))
        print(trend.render(data["trend"]))
    return 0


def run_probe(args: argparse.Namespace) -> int:
    import asyncio

    from tier_router.errors import StoreError
    from tier_router.probe import probe_with_store, render, summary

    rules = load_or_report(args.rules)
    if rules is None:
        return 1
    settings = Settings.from_env()
    store_url = args.store or settings.store_url
    try:
        results = asyncio.run(probe_with_store(rules, settings, store_url))
    except (StoreError, ValueError) as exc:
        print(f"cannot probe with the state store {store_url}: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(summary(results)) if args.json else render(results))
    return 0 if all(r.healthy for r in results) else 1


def run_serve(args: argparse.Namespace) -> int:
    from tier_router.serve import serve, serve_settings
    from tier_router.store.factory import StoreURLError, check_store_url

    settings = serve_settings(args.rules, args.store)
    rules = load_or_report(settings.rules_path)
    if rules is None:  # fail before binding the port, listing every problem
        return 1
    try:
        check_store_url(settings.store_url)
    except StoreURLError as exc:
        print(f"cannot serve: {exc}", file=sys.stderr)
        return 2
    return serve(
        settings,
        rules,
        host=args.host,
        port=args.port,
        workers=args.workers,
        log_level=args.log_level,
        insecure_no_auth=args.insecure_no_auth,
    )


def load_or_report(path: Path | None) -> Any:
    """The compiled rules, or None after printing every problem to stderr."""
    from tier_router.routing.loader import RulesError, load_rules

    try:
        return load_rules(path or default_rules_path())
    except RulesError as exc:
        print(exc, file=sys.stderr)
        return None


def run_compile(args: argparse.Namespace) -> int:
    from tier_router.routing.compiled import main as compile_main

    return compile_main([str(path) for path in args.paths])


def run_check(args: argparse.Namespace) -> int:
    from tier_router.routing.examples import default_examples_path, load_examples, run_example
    from tier_router.routing.loader import RulesError

    path = args.path or default_rules_path()
    rules = load_or_report(path)
    if rules is None:
        return 1
    spec = rules.spec
    print(
        f"{path}: valid ({len(spec.providers)} providers, {len(spec.models)} models, "
        f"{len(spec.tiers)} tiers, {len(spec.rules)} rules)"
    )
    examples_path = args.examples or default_examples_path(Path(path))
    if examples_path is None:
        print("no examples file found: add <rules-stem>.examples.yaml to test the rules", file=sys.stderr)
        return 0
    try:
        examples = load_examples(examples_path)
    except RulesError as exc:
        print(exc, file=sys.stderr)
        return 1
    outcomes = [run_example(rules, example) for example in examples]
    for outcome in outcomes:
        print(outcome.line())
    failed = sum(not o.ok for o in outcomes)
    print(f"{examples_path}: {len(outcomes)} examples, {len(outcomes) - failed} passed, {failed} failed")
    return 1 if failed else 0


def run_explain(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from tier_router import cli_explain
    from tier_router.embedding_params import embedding_decision, is_embeddings, parse_embedding
    from tier_router.errors import APIError
    from tier_router.routing.engine import UnknownModelError, WrongKindError
    from tier_router.routing.request import parse_chat

    rules = load_or_report(args.rules)
    if rules is None:
        return 1
    conversation = None
    try:
        body = explain_body(args)
        headers = parse_headers(args.header)
        embedding = parse_embedding(body) if is_embeddings(body) else None
        request = parse_chat(body) if embedding is None else None
        if request is not None:  # identified as the router would (its memory is not read)
            conversation = cli_explain.conversation_of(rules, body, headers, args.key)
    except (ValueError, OSError, APIError) as exc:
        message = exc.errors()[0]["msg"] if isinstance(exc, ValidationError) else str(exc)
        print(f"invalid request: {message}", file=sys.stderr)
        return 2
    try:
        if embedding is not None:
            decision = embedding_decision(rules, embedding, headers, key=args.key)
        else:
            decision = rules.decide(request, headers, key=args.key)  # type: ignore[arg-type]
            decision = cli_explain.placed_offline(rules, decision, conversation)
    except (UnknownModelError, WrongKindError) as exc:
        print(exc, file=sys.stderr)
        return 1
    states = breaker_states(rules, decision, args.store or configured_store_url())
    if args.json:
        data = cli_explain.as_dict(decision, conversation)
        if states is not None:
            for entry in data["chain"]:
                entry["breakers"] = states.get(entry["model"])
        print(json.dumps(data, ensure_ascii=False))
    else:
        text = cli_text.render_decision(decision, states).split("\n")
        if embedding is None:  # before the last line (features)
            text[-1:-1] = cli_explain.lines(decision, conversation)
        print("\n".join(text))
    return 0


def breaker_states(rules: Any, decision: Any, store_url: str | None) -> dict[str, dict[str, str]] | None:
    """Breaker states of the decision's chain, read from the store (None without a store)."""
    if not store_url:
        return None
    import asyncio

    from tier_router.errors import StoreError
    from tier_router.gateway import breaker_health
    from tier_router.store.factory import open_store

    async def read() -> dict[str, dict[str, str]] | None:
        try:
            store = open_store(store_url, settings=Settings.from_env())
        except ValueError as exc:  # a bad URL
            print(f"warning: cannot read breaker states: {exc}", file=sys.stderr)
            return None
        try:
            health = breaker_health(store, rules)
            return await health.states(list(decision.candidates)) if health else None
        except StoreError as exc:
            print(f"warning: cannot read breaker states: {exc}", file=sys.stderr)
            return None
        finally:
            await store.aclose()

    return asyncio.run(read())


def explain_body(args: argparse.Namespace) -> dict[str, Any]:
    if args.request is not None:
        text = sys.stdin.read() if str(args.request) == "-" else args.request.read_text(encoding="utf-8")
        body = json.loads(text)
        if not isinstance(body, dict):
            raise ValueError("the request file must hold a JSON object")
        body.setdefault("model", args.model)
        return body
    if args.prompt is None:
        raise ValueError("give a PROMPT or --request FILE")
    if args.embedding:
        return {"model": args.model, "input": args.prompt}
    messages = [{"role": "system", "content": args.system}] if args.system else []
    messages.append({"role": "user", "content": args.prompt})
    return {"model": args.model, "messages": messages}


def parse_headers(pairs: list[str]) -> dict[str, str]:
    headers = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name.strip():
            raise ValueError(f"--header expects NAME=VALUE, got {pair!r}")
        headers[name.strip().lower()] = value.strip()
    return headers


if __name__ == "__main__":
    raise SystemExit(main())
