"""The blocks that talk to a router (tests/docs/coverage.py: RUN_ROUTER), run as written against
`tier-router serve --rules rules/local-demo.yaml` — no router keys, the default store in a
scratch directory — on a free 127.0.0.1 port instead of the documented 8080.

A `console` block's commands run in bash and print what the block shows (dates, ids and
lengths normalised: tests/docs/blocks.py); a `python` block runs with the same port and prints
the `text` block after it. One router for the module."""

from __future__ import annotations

import contextlib
import io
import json
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.docs.blocks import DOCUMENTED_PORT, ROOT, Block, blocks, console_steps, following, same_output
from tests.docs.coverage import CHECKED, RUN_ROUTER
from tests.support.router_process import base_env, free_port, tier_router_command
from tests.support.stack import ROUTER_KEY

pytestmark = pytest.mark.integration

RUN = [b for b in blocks() if CHECKED.get(b.key) == RUN_ROUTER]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The router's working directory, as a clone looks to it: `rules/` and the default store."""
    workdir = tmp_path_factory.mktemp("demo")
    (workdir / "rules").symlink_to(ROOT / "rules")
    return workdir


@pytest.fixture(scope="module")
def port(workdir: Path) -> Iterator[int]:
    """`tier-router serve --rules rules/local-demo.yaml` (the README's command) on a free port."""
    port = free_port()
    command = [*tier_router_command(), "serve", "--rules", "rules/local-demo.yaml", "--port", str(port)]
    with (workdir / "stdout").open("wb") as out, (workdir / "stderr").open("wb") as err:
        proc = subprocess.Popen(command, cwd=workdir, stdout=out, stderr=err, env=base_env({}))
    try:
        for _ in range(400):
            assert proc.poll() is None, (workdir / "stderr").read_text()
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                    break
            time.sleep(0.05)
        else:
            raise TimeoutError((workdir / "stderr").read_text())
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=15)


def local(text: str, port: int) -> str:
    return text.replace(f"127.0.0.1:{DOCUMENTED_PORT}", f"127.0.0.1:{port}")


def test_there_are_blocks_to_run() -> None:
    assert {b.lang for b in RUN} == {"console", "python"}


@pytest.mark.parametrize("block", RUN, ids=str)
def test_the_block_does_what_it_shows(block: Block, port: int, tmp_path: Path) -> None:
    if block.lang == "console":
        for step in console_steps(block.text):
            done = subprocess.run(
                ["bash", "-c", local(step.command, port)],
                cwd=tmp_path,
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert done.returncode == 0, (step.command, done.stderr)
            problem = same_output(step.output, done.stdout.splitlines())
            assert problem is None, f"{block}: {step.command}\n{problem}"
        return
    output = io.StringIO()
    with contextlib.redirect_stdout(output):
        exec(compile(local(block.text, port), str(block), "exec"), {"__name__": "__doc_block__"})  # noqa: S102
    shown = following(block)
    assert shown is not None, f"{block}: no output block after it"
    assert shown.lang == "text", f"{block}: no output block after it"
    problem = same_output(shown.text.splitlines(), output.getvalue().splitlines())
    assert problem is None, f"{block}\n{problem}"


def test_the_status_the_readme_names(port: int, workdir: Path) -> None:
    """The README's `curl .../v1/router/status` and `tier-router status --rules ...`, run in the
    router's directory (the same default store), after one answer."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    (curl,) = re.findall(r"`(curl -s http://127\.0\.0\.1:8080/v1/router/status)`", readme)
    (cli,) = re.findall(r"`(tier-router status --rules rules/local-demo\.yaml)`", readme)
    httpx.post(
        f"http://127.0.0.1:{port}/v1/chat/completions",
        json={"model": "large", "messages": [{"role": "user", "content": "hi"}]},
    ).raise_for_status()
    done = subprocess.run(["bash", "-c", local(curl, port)], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0
    status = json.loads(done.stdout)
    assert {"spend", "quality", "breakers"} <= set(status)
    assert status["spend"]["by_model"]["large"] != "0.000000"
    argv = cli.split()
    done = subprocess.run([*tier_router_command(), *argv[1:]], cwd=workdir, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert re.search(r"spend +\$0\.\d+ over [1-9]\d* requests", done.stdout), done.stdout


def out_of_scope_paths() -> list[str]:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Out of scope\n", 1)[1].split("\n## ", 1)[0]
    paragraph = section.split("Other APIs are not served:", 1)[1].split(" are all 404", 1)[0]
    return re.findall(r"`(/v1/[a-z/]+)`", paragraph)


def test_what_the_readme_calls_out_of_scope_is_a_404(port: int) -> None:
    paths = out_of_scope_paths()
    assert {"/v1/responses", "/v1/completions", "/v1/messages"} <= set(paths)
    for path in paths:
        response = httpx.post(
            f"http://127.0.0.1:{port}{path}",
            json={"model": "auto", "messages": [{"role": "user", "content": "hi"}]},
            headers={"authorization": f"Bearer {ROUTER_KEY}"},
        )
        assert response.status_code == 404, (path, response.status_code)
