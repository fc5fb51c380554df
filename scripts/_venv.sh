# Sourced by the other scripts with what they need: `source _venv.sh serve` (the router and
# uvicorn: `.[serve]`) or `source _venv.sh dev` (everything tests and linters need: `.[dev]`,
# which includes serve). Makes sure .venv exists and holds it; installs only when something
# is missing: pyproject.toml changed since the last install, or `dev` is wanted and only
# `serve` was installed (a later `./scripts/test` adds the dev extras; `./scripts/serve`
# after `./scripts/test` installs nothing: it never downgrades).
#
# The venv is created without pip, and `serve` installs into it with this Python's own pip
# when it can (`pip --python`, pip >= 22.3): bootstrapping pip into a new venv costs ~5 s of
# the first run. `dev` (and a host pip that cannot) bootstraps pip into the venv (ensurepip),
# so a developer's `pip install` in the activated venv lands there. Measured: bench/RESULTS.md,
# "A newcomer's first run".
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
PYTHON="${PYTHON:-python3}"
WANT="${1:-dev}"
case "$WANT" in serve | dev) ;; *) echo "_venv.sh: expected serve or dev, got '$WANT'" >&2; exit 2 ;; esac
if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON" -m venv --without-pip "$VENV"
fi
HASH="$(sha256sum "$ROOT/pyproject.toml" | cut -c1-16)"
if [ ! -f "$VENV/.installed-dev-$HASH" ] && { [ "$WANT" = dev ] || [ ! -f "$VENV/.installed-serve-$HASH" ]; }; then
  if [ -x "$VENV/bin/pip" ]; then
    PIP=("$VENV/bin/pip")
  elif [ "$WANT" = serve ] && "$PYTHON" -m pip --python "$VENV/bin/python" --version >/dev/null 2>&1; then
    PIP=("$PYTHON" -m pip --python "$VENV/bin/python")
  else  # a developer's venv gets its own pip (`pip install` in the activated venv lands there)
    "$VENV/bin/python" -m ensurepip --default-pip >/dev/null
    PIP=("$VENV/bin/pip")
  fi
  # uv installs in a fraction of pip's time (pip spends seconds, more on a busy machine, sifting
  # the thousands of wheel links of pydantic-core): used when on PATH or already in the venv,
  # else installed into the venv with pip — unless pip is configured for another index (uv
  # does not read pip's configuration) or TIER_ROUTER_INSTALLER=pip. Any uv failure: pip.
  UV=""
  if [ "${TIER_ROUTER_INSTALLER:-}" != pip ]; then
    if [ -x "$VENV/bin/uv" ]; then
      UV="$VENV/bin/uv"
    elif command -v uv >/dev/null 2>&1; then
      UV="$(command -v uv)"
    elif ! "$PYTHON" -m pip config list 2>/dev/null | grep -q '\.index-url='; then
      "${PIP[@]}" install --quiet --disable-pip-version-check uv >/dev/null 2>&1 || true
      [ -x "$VENV/bin/uv" ] && UV="$VENV/bin/uv"
    fi
  fi
  echo "installing tier-router[$WANT] into .venv (once; again only when pyproject.toml changes)" >&2
  if [ -z "$UV" ] || ! "$UV" pip install --quiet --python "$VENV/bin/python" -e "$ROOT[$WANT]"; then
    "${PIP[@]}" install --quiet --disable-pip-version-check -e "$ROOT[$WANT]"
  fi
  rm -f "$VENV"/.installed-*
  touch "$VENV/.installed-$WANT-$HASH"
fi
export PATH="$VENV/bin:$PATH"
cd "$ROOT"
