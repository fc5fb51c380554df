# Sourced by the other scripts with what they need: `source _venv.sh serve` (the router and
# uvicorn: `.[serve]`) or `source _venv.sh dev` (everything tests and linters need: `.[dev]`,
# which includes serve). Makes sure .venv exists and holds it; installs only when something
# is missing: pyproject.toml changed since the last install, or `dev` is wanted and only
# `serve` was installed (a later `./scripts/test` adds the dev extras; `./scripts/serve`
# after `./scripts/test` installs nothing: it never downgrades).
#
# The venv is created without pip: `serve` installs into it with this Python's own pip when
# it can (`pip --python`, pip >= 22.3), as bootstrapping pip into a new venv costs ~5 s of the
# first run. `dev` (and a host pip that cannot) bootstraps pip into the venv (ensurepip), so a
# developer's `pip install` in the activated venv lands there. Measured: bench/RESULTS.md,
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
other_index() {  # pip is configured for an index other than PyPI (uv would not know of it)
  [ -n "${PIP_INDEX_URL:-}" ] && return 0
  grep -qsE '^[[:space:]]*index-url[[:space:]]*=' "${PIP_CONFIG_FILE:-/dev/null}" /etc/pip.conf \
    /etc/xdg/pip/pip.conf "${HOME:-/nonexistent}/.pip/pip.conf" "${HOME:-/nonexistent}/.config/pip/pip.conf" \
    "${HOME:-/nonexistent}/Library/Application Support/pip/pip.conf"
}
host_pip() { "$PYTHON" -m pip --python "$VENV/bin/python" "$@"; }  # pip >= 22.3
if [ ! -f "$VENV/.installed-dev-$HASH" ] && { [ "$WANT" = dev ] || [ ! -f "$VENV/.installed-serve-$HASH" ]; }; then
  echo "installing tier-router[$WANT] into .venv (once; again only when pyproject.toml changes)" >&2
  if [ "$WANT" = dev ] && [ ! -x "$VENV/bin/pip" ]; then  # `pip install` in a developer's venv lands there
    "$VENV/bin/python" -m ensurepip --default-pip >/dev/null
  fi
  # uv installs in a fraction of pip's time (pip spends seconds, more on a busy machine, sifting
  # the thousands of wheel links of pydantic-core): used when in the venv or on PATH, else put
  # into the venv with pip — unless pip is configured for another index (uv does not read pip's
  # configuration) or TIER_ROUTER_INSTALLER=pip. If uv cannot be had or fails: pip.
  UV=""
  if [ "${TIER_ROUTER_INSTALLER:-}" != pip ]; then
    if [ -x "$VENV/bin/uv" ]; then
      UV="$VENV/bin/uv"
    elif command -v uv >/dev/null 2>&1; then
      UV="$(command -v uv)"
    elif ! other_index; then
      if [ -x "$VENV/bin/pip" ]; then
        "$VENV/bin/pip" install --quiet --disable-pip-version-check uv >/dev/null 2>&1 || true
      else
        host_pip install --quiet --disable-pip-version-check uv >/dev/null 2>&1 || true
      fi
      [ -x "$VENV/bin/uv" ] && UV="$VENV/bin/uv"
    fi
  fi
  if [ -z "$UV" ] || ! "$UV" pip install --quiet --python "$VENV/bin/python" -e "$ROOT[$WANT]"; then
    if [ ! -x "$VENV/bin/pip" ] && ! host_pip --version >/dev/null 2>&1; then
      "$VENV/bin/python" -m ensurepip --default-pip >/dev/null
    fi
    if [ -x "$VENV/bin/pip" ]; then
      "$VENV/bin/pip" install --quiet --disable-pip-version-check -e "$ROOT[$WANT]"
    else
      host_pip install --quiet --disable-pip-version-check -e "$ROOT[$WANT]"
    fi
  fi
  rm -f "$VENV"/.installed-*
  touch "$VENV/.installed-$WANT-$HASH"
fi
export PATH="$VENV/bin:$PATH"
cd "$ROOT"
