"""Which test checks each fenced block of README.md and docs/*.md — the one table a new block
must be added to (tests/docs/test_coverage.py fails on a block it does not list, and on an
entry whose block is gone).

A block is named (page, heading, n): the n-th block under that heading (`blocks.Block.key`).
What checks it:

- RUN_ROUTER: run against the real router serving rules/local-demo.yaml on a free port
  (tests/docs/test_router_blocks.py): a `console` block's `$ ` commands run in bash and their
  output is compared with the documented one; a `python` block runs (base_url rewritten) and
  its stdout is compared with the `text` block right after it (OUTPUT).
- RUN_OFFLINE: run with no router (tests/docs/test_offline_blocks.py), in a scratch directory
  whose `rules/` is the repository's: `console` blocks compared, `sh` blocks must exit 0.
- YAML: loaded by the rules loader (tests/docs/test_offline_blocks.py): a complete rules file
  as it is; a fragment merged into rules/router.yaml.
- OUTPUT: the documented output of the block before it, compared by that block's runner.
- a path "tests/...py" or "tests/...py::test_name": another test reads the page and checks the
  block (test_coverage.py checks that the file exists, names the page and has the function).

Blocks that cannot run here (an AWS account, the test command itself) are in EXEMPT with the
reason, and tests/docs/test_exempt_blocks.py checks them as far as they can be checked here.
"""

from __future__ import annotations

from dataclasses import dataclass

RUN_ROUTER = "run:router"
RUN_OFFLINE = "run:offline"
YAML = "yaml"
OUTPUT = "output"

README = "README.md"
TRY = "Try it"
AWS_QUICKSTART = "Deploy to AWS"
REFERENCE = "tests/docs/test_reference_blocks.py"

CHECKED: dict[tuple[str, str, int], str] = {
    # README.md
    (README, TRY, 1): RUN_ROUTER,
    (README, TRY, 2): RUN_ROUTER,
    (README, TRY, 3): OUTPUT,
    (README, "Write your own rules", 1): YAML,
    # docs/regions.md
    ("docs/regions.md", "Budgets: a share of the cap per region", 1): YAML,
    # docs/embeddings.md
    ("docs/embeddings.md", "Embeddings", 1): RUN_ROUTER,
    ("docs/embeddings.md", "Embeddings", 2): OUTPUT,
    ("docs/embeddings.md", "Rules file", 1): (
        "tests/embeddings/test_rules.py::test_the_docs_rules_snippet_loads_and_routes_as_described"
    ),
    ("docs/embeddings.md", "Rules file", 2): (
        "tests/embeddings/test_rules.py::test_the_docs_examples_snippet_is_what_check_runs"
    ),
    # docs/comparison.md: its ~15-minute command needs LiteLLM and Portkey installed; the test
    # parses it against the script and bench/README.md's install lines
    ("docs/comparison.md", "Measured", 1): (
        "tests/test_compare_gateways.py::test_the_documented_commands_are_the_scripts"
    ),
    # docs/tracing.md
    ("docs/tracing.md", "Tracing (OpenTelemetry)", 1): "tests/tracing/test_docs.py",
    # docs/coldstart.md
    (
        "docs/coldstart.md",
        "Compiled rules",
        1,
    ): "tests/coldstart/test_docs.py::test_the_stale_warning_is_the_one_shown",
    ("docs/coldstart.md", "After editing a rules file", 1): RUN_OFFLINE,
    # docs/design.md
    ("docs/design.md", "Layout", 1): f"{REFERENCE}::test_the_layout_names_every_module",
    # docs/rules.md
    ("docs/rules.md", "The rules file", 1): YAML,
    ("docs/rules.md", "The rules file", 2): f"{REFERENCE}::test_the_load_error_example",
    ("docs/rules.md", "Rules are code: `check` and `explain`", 1): RUN_OFFLINE,
    ("docs/rules.md", "Rules are code: `check` and `explain`", 2): RUN_OFFLINE,
    # docs/replay.md
    ("docs/replay.md", "Cost audit: tier-router replay", 1): RUN_OFFLINE,
    ("docs/replay.md", "Cost audit: tier-router replay", 2): (
        f"{REFERENCE}::test_the_replay_against_example"
    ),
    ("docs/replay.md", "Cost audit: tier-router replay", 3): (
        f"{REFERENCE}::test_the_replay_against_example"
    ),
    ("docs/replay.md", "Cost audit: tier-router replay", 4): "tests/quality_report/test_docs.py",
    ("docs/replay.md", "Cost audit: tier-router replay", 5): "tests/quality_report/test_docs.py",
    ("docs/replay.md", "Conversations and the trend over time", 1): RUN_OFFLINE,
    # docs/spend.md, docs/state.md
    ("docs/prompt-cache.md", "Automatic prompt-cache breakpoints (Anthropic)", 1): YAML,
    ("docs/conversations.md", "Sticky conversations", 1): YAML,
    ("docs/spend.md", "Spend: costs, budgets, rate limits, cache", 1): YAML,
    ("docs/spend.md", "Router keys", 1): f"{REFERENCE}::test_the_router_keys_example",
    (
        "docs/spend.md",
        "Tokens per request over time",
        1,
    ): "tests/inflation/test_docs.py::test_the_status_commands",
    (
        "docs/spend.md",
        "Tokens per request over time",
        2,
    ): "tests/inflation/test_docs.py::test_the_trend_output",
    (
        "docs/spend.md",
        "Tokens per request over time",
        3,
    ): "tests/inflation/test_docs.py::test_the_json_excerpt",
    (
        "docs/spend.md",
        "Tokens per request over time",
        4,
    ): "tests/inflation/test_docs.py::test_the_alarm_command",
    ("docs/state.md", "Shared state and circuit breakers", 1): YAML,
    # docs/prompt-cache.md: prompt_cache_key
    ("docs/prompt-cache.md", "prompt_cache_key (OpenAI-compatible providers)", 1): (
        "tests/prompt_cache/test_docs.py::test_the_providers_example_decides_as_the_text_says"
    ),
    ("docs/prompt-cache.md", "Seen in explain and the log line", 1): (
        "tests/prompt_cache/test_docs.py::test_the_log_line_excerpt_is_a_real_lines_field"
    ),
    # docs/http-api.md
    ("docs/http-api.md", "POST /v1/feedback", 1): "tests/feedback/test_feedback_docs.py",
    ("docs/http-api.md", "POST /v1/feedback", 2): "tests/feedback/test_feedback_docs.py",
    # docs/quality.md: every block loads into the page's complete example
    ("docs/quality.md", "Quality: cascades, validators, splits, rollouts and experiments", 1): (
        "tests/cascade/test_docs.py"
    ),
    ("docs/quality.md", "Validators", 1): "tests/cascade/test_docs.py",
    ("docs/quality.md", "Cascades", 1): "tests/cascade/test_docs.py",
    ("docs/quality.md", "Weighted splits", 1): "tests/cascade/test_docs.py",
    ("docs/quality.md", "Rollouts and experiments", 1): "tests/cascade/test_docs.py",
    # docs/quality-loop.md
    ("docs/quality-loop.md", "The loop in five commands", 1): "tests/quality_loop/test_readme_loop.py",
    ("docs/quality-loop.md", "Sampled judging", 1): "tests/judging/test_docs.py",
    ("docs/quality-loop.md", "Sampled judging", 2): "tests/judging/test_docs.py",  # test_judging compares
    ("docs/quality-loop.md", "Judging on Lambda", 1): "tests/lambda_judge/test_docs.py",
    ("docs/quality-loop.md", "Judging on Lambda", 2): "tests/lambda_judge/test_docs.py",
    ("docs/quality-loop.md", "Feedback", 1): "tests/feedback/test_feedback_docs.py",
    ("docs/quality-loop.md", "Feedback", 2): "tests/feedback/test_feedback_docs.py",
    ("docs/quality-loop.md", "Feedback", 3): "tests/feedback/test_feedback_docs.py",
    ("docs/quality-loop.md", "Feedback", 4): "tests/feedback/test_feedback_docs.py",
    ("docs/quality-loop.md", "The quality report", 1): "tests/quality_report/test_docs.py",
    ("docs/quality-loop.md", "The quality report", 2): "tests/quality_report/test_docs.py",
    ("docs/quality-loop.md", "The quality report", 3): "tests/quality_report/test_docs.py",
    ("docs/quality-loop.md", "Labels", 1): "tests/labels/test_export.py",
    ("docs/quality-loop.md", "Labels", 2): "tests/labels/test_export.py",
    ("docs/quality-loop.md", "Calibrate", 1): "tests/calibrate/test_docs.py",
    ("docs/quality-loop.md", "Calibrate", 2): "tests/calibrate/test_docs.py",
}


@dataclass(frozen=True)
class Exempt:
    reason: str
    check: str
    """The function of tests/docs/exempt_checks.py that checks what can be checked here."""


EXEMPT: dict[tuple[str, str, int], Exempt] = {
    (README, "One request's path", 1): Exempt(
        "a Mermaid picture, not a command", "diagram_follows_the_request_path"
    ),
    (README, "Two commands", 1): Exempt(
        "./scripts/serve installs .venv on its first run; the tests run the same `tier-router serve`"
        " on a free port (test_router_blocks.py)",
        "serve_script_takes_these_arguments",
    ),
    (README, "Two commands", 2): Exempt("./scripts/test is the test suite itself", "script_runs_the_tests"),
    (README, AWS_QUICKSTART, 1): Exempt("needs an AWS account", "aws_commands_match_the_template"),
    (README, AWS_QUICKSTART, 2): Exempt("needs an AWS account", "aws_commands_match_the_template"),
    (README, AWS_QUICKSTART, 3): Exempt("needs a deployed stack", "aws_commands_match_the_template"),
    (README, AWS_QUICKSTART, 4): Exempt("needs a deployed stack", "aws_commands_match_the_template"),
    (README, AWS_QUICKSTART, 5): Exempt(
        "samconfig.toml lines: deploying them needs an AWS account", "samconfig_overrides_the_template_takes"
    ),
    (README, AWS_QUICKSTART, 6): Exempt("needs a deployed stack", "aws_commands_match_the_template"),
    ("docs/regions.md", "Deploying to several regions", 1): Exempt(
        "needs an AWS account and the home region's stack", "aws_commands_match_the_template"
    ),
    ("docs/regions.md", "SnapStart", 1): Exempt(
        "needs a deployed stack with SnapStart=On", "aws_commands_match_the_template"
    ),
    ("docs/tracing.md", "Turn it on", 1): Exempt(
        "installs a package and serves until stopped; tests/tracing/test_serve.py serves the demo"
        " with these variables and a collector",
        "tracing_commands_use_the_documented_settings",
    ),
    ("docs/aws.md", "Deploy", 1): Exempt("needs an AWS account", "aws_commands_match_the_template"),
    ("docs/aws.md", "Router keys and provider keys", 1): Exempt(
        "needs an AWS account", "aws_commands_match_the_template"
    ),
    ("docs/aws.md", "Calling it", 1): Exempt(
        "needs a deployed stack's Function URL", "python_compiles_with_the_documented_base_url"
    ),
}
