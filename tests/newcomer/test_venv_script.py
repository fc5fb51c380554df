"""scripts/_venv.sh: `./scripts/serve` installs `.[serve]`, `./scripts/test` `.[dev]`; a later
`test` after `serve` upgrades the venv, a later `serve` after `test` installs nothing (never a
downgrade), and a changed pyproject.toml installs again; uv installs when it can, pip when it
cannot. Stand-in pythons, pips and uvs record what they were asked to do: nothing is installed
for real (bench/bench_first_run.py does that)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "scripts").mkdir()
    shutil.copy(SCRIPTS / "_venv.sh", tmp_path / "scripts" / "_venv.sh")
    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    bin_dir = tmp_path / ".venv" / "bin"
    bin_dir.mkdir(parents=True)
    (bin_dir / "python").write_text("#!/bin/sh\nexit 0\n")
    (bin_dir / "pip").write_text(f'#!/bin/sh\necho "$*" >> {tmp_path / "pip.log"}\n')
    for name in ("python", "pip"):
        (bin_dir / name).chmod(0o755)
    return tmp_path


def run(project: Path, want: str) -> list[str]:
    """Source the script as scripts/serve or scripts/test do; the pip calls it made."""
    log = project / "pip.log"
    log.unlink(missing_ok=True)
    subprocess.run(
        ["bash", "-c", f'source "{project}/scripts/_venv.sh" {want}'],
        check=True,
        capture_output=True,
        env={"PATH": "/usr/bin:/bin", "TIER_ROUTER_INSTALLER": "pip"},
    )
    return log.read_text().splitlines() if log.exists() else []


def test_serve_installs_the_serve_extra_only(project: Path) -> None:
    (call,) = run(project, "serve")
    assert call.endswith(f"-e {project}[serve]")
    assert "--disable-pip-version-check" in call
    assert run(project, "serve") == []


def test_test_after_serve_upgrades_and_serve_after_test_does_not_downgrade(project: Path) -> None:
    run(project, "serve")
    (call,) = run(project, "dev")
    assert call.endswith(f"-e {project}[dev]")
    assert run(project, "serve") == []
    assert run(project, "dev") == []


def test_a_changed_pyproject_installs_again(project: Path) -> None:
    run(project, "dev")
    (project / "pyproject.toml").write_text("[project]\nname = 'x'\nversion = '2'\n")
    (call,) = run(project, "serve")
    assert call.endswith("[serve]")


def test_an_unknown_set_is_refused(project: Path) -> None:
    result = subprocess.run(
        ["bash", "-c", f'source "{project}/scripts/_venv.sh" everything'], capture_output=True, text=True
    )
    assert result.returncode == 2
    assert "expected serve or dev" in result.stderr


def test_the_scripts_ask_for_what_they_need() -> None:
    assert '_venv.sh" serve' in (SCRIPTS / "serve").read_text()
    assert '_venv.sh" dev' in (SCRIPTS / "test").read_text()


@pytest.fixture
def pipless(tmp_path: Path) -> tuple[Path, Path]:
    """A venv without pip, a host Python whose pip can install into it (both stand-ins), and a
    log of what each was asked."""
    (tmp_path / "scripts").mkdir()
    shutil.copy(SCRIPTS / "_venv.sh", tmp_path / "scripts" / "_venv.sh")
    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    log = tmp_path / "calls.log"
    bin_dir = tmp_path / ".venv" / "bin"
    bin_dir.mkdir(parents=True)
    venv_python, pip = bin_dir / "python", bin_dir / "pip"
    venv_python.write_text(
        "#!/bin/sh\n"
        f'echo "venv-python $*" >> {log}\n'
        'if [ "$2" = ensurepip ]; then\n'
        f"  printf '#!/bin/sh\\necho \"venv-pip $*\" >> {log}\\n' > {pip}; chmod 755 {pip}\n"
        "fi\n"
    )
    host = tmp_path / "host-python"
    host.write_text(f'#!/bin/sh\necho "host-python $*" >> {log}\n')
    for path in (venv_python, host):
        path.chmod(0o755)
    return tmp_path, log


def test_serve_installs_with_the_host_pip_and_dev_bootstraps_its_own(pipless: tuple[Path, Path]) -> None:
    project, log = pipless
    env = {"PATH": "/usr/bin:/bin", "PYTHON": str(project / "host-python"), "TIER_ROUTER_INSTALLER": "pip"}

    def source(want: str) -> list[str]:
        log.unlink(missing_ok=True)
        subprocess.run(["bash", "-c", f'source "{project}/scripts/_venv.sh" {want}'], check=True, env=env)
        return log.read_text().splitlines() if log.exists() else []

    serve = source("serve")
    assert serve[-1].startswith(f"host-python -m pip --python {project}/.venv/bin/python install ")
    assert serve[-1].endswith("[serve]")
    assert not (project / ".venv" / "bin" / "pip").exists()  # no ~5 s ensurepip on the first serve
    dev = source("dev")
    assert "venv-python -m ensurepip --default-pip" in dev
    assert dev[-1].startswith("venv-pip install ")
    assert dev[-1].endswith("[dev]")


def uv_project(tmp_path: Path, *, uv_works: bool = True) -> tuple[Path, Path]:
    """A venv with pip; its pip installs a stand-in uv into the venv when asked for `uv`."""
    for config in (Path("/etc/pip.conf"), Path("/etc/xdg/pip/pip.conf")):
        if config.exists() and re.search(r"^\s*index-url\s*=", config.read_text(), re.MULTILINE):
            pytest.skip(f"{config} names another index: the script rightly keeps pip here")
    (tmp_path / "scripts").mkdir()
    shutil.copy(SCRIPTS / "_venv.sh", tmp_path / "scripts" / "_venv.sh")
    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    log = tmp_path / "calls.log"
    bin_dir = tmp_path / ".venv" / "bin"
    bin_dir.mkdir(parents=True)
    uv = bin_dir / "uv"
    uv_script = f'#!/bin/sh\necho "uv $*" >> {log}\nexit {0 if uv_works else 1}\n'
    (tmp_path / "uv.template").write_text(uv_script)
    (bin_dir / "python").write_text("#!/bin/sh\nexit 0\n")
    (bin_dir / "pip").write_text(
        f'#!/bin/sh\necho "pip $*" >> {log}\n'
        f'case "$*" in *" uv") cp {tmp_path / "uv.template"} {uv}; chmod 755 {uv};; esac\n'
    )
    (tmp_path / "host-python").write_text("#!/bin/sh\nexit 0\n")  # `pip config list`: nothing set
    for path in (bin_dir / "python", bin_dir / "pip", tmp_path / "host-python"):
        path.chmod(0o755)
    return tmp_path, log


def source_with(project: Path, log: Path, want: str, **env: str) -> list[str]:
    log.unlink(missing_ok=True)
    full = {"PATH": "/usr/bin:/bin", "PYTHON": str(project / "host-python"), **env}
    subprocess.run(["bash", "-c", f'source "{project}/scripts/_venv.sh" {want}'], check=True, env=full)
    return log.read_text().splitlines() if log.exists() else []


def test_uv_is_installed_with_pip_and_installs_the_project(tmp_path: Path) -> None:
    project, log = uv_project(tmp_path)
    calls = source_with(project, log, "serve")
    assert calls[0].startswith("pip install ")
    assert calls[0].endswith(" uv")
    assert calls[1] == f"uv pip install --quiet --python {project}/.venv/bin/python -e {project}[serve]"
    assert len(calls) == 2
    assert source_with(project, log, "dev")[0].startswith("uv pip install ")  # the venv's uv again


def test_a_failing_uv_falls_back_to_pip(tmp_path: Path) -> None:
    project, log = uv_project(tmp_path, uv_works=False)
    calls = source_with(project, log, "serve")
    assert calls[1].startswith("uv pip install ")
    assert calls[2].startswith("pip install ")
    assert calls[2].endswith(f"-e {project}[serve]")


@pytest.mark.parametrize("where", ["environment", "config file"])
def test_pip_configured_for_another_index_keeps_pip(tmp_path: Path, where: str) -> None:
    project, log = uv_project(tmp_path)
    config = project / "pip.conf"
    config.write_text("[global]\nextra-index-url = file:///x\n")
    env = {"PIP_CONFIG_FILE": str(config)}
    calls = source_with(project, log, "serve", **env)
    assert calls[0].endswith(" uv")  # an extra index alone: uv still
    (project / ".venv" / "bin" / "uv").unlink()
    for stamp in (project / ".venv").glob(".installed-*"):
        stamp.unlink()
    if where == "environment":
        env["PIP_INDEX_URL"] = "https://mirror.example/simple"
    else:
        config.write_text("[global]\nindex-url = https://mirror.example/simple\n")
    (call,) = source_with(project, log, "serve", **env)
    assert call.startswith("pip install ")
    assert call.endswith("[serve]")
    assert not (project / ".venv" / "bin" / "uv").exists()


def test_the_installer_can_be_forced_to_pip(tmp_path: Path) -> None:
    project, log = uv_project(tmp_path)
    (call,) = source_with(project, log, "serve", TIER_ROUTER_INSTALLER="pip")
    assert call.startswith("pip install ")
    assert call.endswith("[serve]")
