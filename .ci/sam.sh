#!/usr/bin/env bash
# Deploy checks, offline: lint template.yaml and build the Lambda artifact exactly as
# `sam build` does for a deploy, then a native copy for tests/deploy and bench/bench_coldstart.py.
#
#   1. a fresh .venv-sam with aws-sam-cli from PyPI (nothing cached across runs);
#   2. `sam validate --lint` with dummy credentials and region (no AWS call is made);
#   3. `sam build` (no container): handler/Makefile installs wheels for python3.12 on arm64
#      into .aws-sam/build/RouterFunction, the deployable artifact; checked below;
#   4. on a non-arm64 host, the same Makefile with LAMBDA_ARCH=<host> into
#      .aws-sam/build-<host>/RouterFunction: arm64 code cannot run here, this copy can.
#      tests/deploy/test_built_artifact.py runs the handler from it.
#
# Needs python3.12 (on PATH, or installed with pyenv), make, and PyPI.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"
SAM_CLI_VERSION="1.170.0"
started=$(date +%s.%N)
elapsed() { python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.1f}s')" "$1" "$(date +%s.%N)"; }

# -- python3.12 on PATH (sam build and the Makefile both need it) ---------------------------
if ! python3.12 -c '' 2>/dev/null; then
  if command -v pyenv >/dev/null && version=$(pyenv versions --bare | grep -E '^3\.12(\.[0-9]+)?$' | tail -1) \
      && [ -n "$version" ]; then
    shim_dir="$(mktemp -d)"
    trap 'rm -rf "$shim_dir"' EXIT
    ln -s "$(pyenv root)/versions/$version/bin/python3.12" "$shim_dir/python3.12"
    export PATH="$shim_dir:$PATH"
  else
    echo "sam.sh: python3.12 is required (the Lambda runtime's version) and was not found" >&2
    exit 1
  fi
fi
PY312="$(python3.12 -c 'import os, sys; print(os.path.realpath(sys.executable))')"
echo "sam.sh: $PY312 ($(python3.12 --version))"

# -- nothing real from AWS: dummy credentials, no config files, no metadata service ----------
unset AWS_PROFILE AWS_SESSION_TOKEN AWS_DEFAULT_PROFILE
export AWS_ACCESS_KEY_ID=AKIAIOSFODNN7EXAMPLE
export AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY
export AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1
export AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null
export AWS_EC2_METADATA_DISABLED=true
export SAM_CLI_TELEMETRY=0
export PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1

# -- 1. aws-sam-cli in its own venv -----------------------------------------------------------
t=$(date +%s.%N)
rm -rf .venv-sam
"$PY312" -m venv .venv-sam  # the real path: the venv outlives this script's PATH
echo '*' > .venv-sam/.gitignore  # keeps git, ruff and editors out of it
.venv-sam/bin/pip install --quiet "aws-sam-cli==$SAM_CLI_VERSION" 2> >(grep -v "is ignored: it is neither a file nor a directory" >&2)
SAM="$ROOT/.venv-sam/bin/sam"
echo "sam.sh: $("$SAM" --version) installed in $(elapsed "$t")"

# -- 2. lint ----------------------------------------------------------------------------------
t=$(date +%s.%N)
"$SAM" validate --lint --template template.yaml
echo "sam.sh: validate --lint in $(elapsed "$t")"

# -- 3. the deployable artifact (arm64) -------------------------------------------------------
t=$(date +%s.%N)
rm -rf .aws-sam
"$SAM" build --template template.yaml 2> >(grep -v "is ignored: it is neither a file nor a directory" >&2)
echo "sam.sh: sam build in $(elapsed "$t")"

# -- 4. a native copy for the tests and the cold-start bench ---------------------------------
case "$(uname -m)" in
  aarch64|arm64) host_arch="" ;;
  x86_64) host_arch=x86_64 ;;
  *) echo "sam.sh: no native build for $(uname -m)" >&2; host_arch="" ;;
esac
if [ -n "$host_arch" ]; then
  t=$(date +%s.%N)
  make --no-print-directory -C handler build-RouterFunction LAMBDA_ARCH="$host_arch" \
    ARTIFACTS_DIR="$ROOT/.aws-sam/build-$host_arch/RouterFunction" \
    2> >(grep -v "is ignored: it is neither a file nor a directory" >&2)
  echo "sam.sh: native $host_arch build in $(elapsed "$t")"
fi

# -- checks and sizes -------------------------------------------------------------------------
python3.12 - "$ROOT/.aws-sam" <<'PY'
import io, os, sys, zipfile

ELF_MACHINES = {183: "aarch64", 62: "x86_64"}


def check(artifact: str, machine: str) -> None:
    assert os.path.isfile(os.path.join(artifact, "tier_router", "lambda_entry.py")), "no handler module"
    assert os.path.isfile(os.path.join(artifact, "rules", "router.yaml")), "rules/ not packaged"
    assert os.access(os.path.join(artifact, "run.sh"), os.X_OK), "run.sh missing or not executable"
    size = files = sos = 0
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        for root, _, names in os.walk(artifact):
            for name in names:
                path = os.path.join(root, name)
                size += os.path.getsize(path)
                files += 1
                zf.write(path, os.path.relpath(path, artifact))
                if ".so" in name:
                    with open(path, "rb") as f:
                        head = f.read(20)
                    found = ELF_MACHINES.get(int.from_bytes(head[18:20], "little"), "?")
                    assert found == machine, f"{path} is built for {found}, expected {machine}"
                    sos += 1
    print(
        f"sam.sh: {os.path.relpath(artifact)}: {machine}, {files} files, {size / 1e6:.2f} MB unzipped,"
        f" {buffer.tell() / 1e6:.2f} MB zipped, {sos} native extensions"
    )


check(os.path.join(sys.argv[1], "build", "RouterFunction"), "aarch64")
for name in sorted(os.listdir(sys.argv[1])):
    if name.startswith("build-"):
        check(os.path.join(sys.argv[1], name, "RouterFunction"), name.removeprefix("build-"))
PY
echo "sam.sh: done in $(elapsed "$started")"
