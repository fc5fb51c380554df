"""TLS verification from a hashed CA directory (the Lambda artifact's `cacerts/`, built by the
Makefile's `cacerts` target): a server whose CA is in the directory is trusted, any other is
refused, and the operator's SSL_CERT_FILE / SSL_CERT_DIR still win.

Real handshakes on 127.0.0.1 with certificates made here by the `openssl` command (which the
build needs too); the directory is made by the Makefile target itself, so the build step is
what is tested.
"""

from __future__ import annotations

import asyncio
import ssl
import subprocess
from pathlib import Path

import httpx
import pytest
from tier_router.gateway import tls_verify

HANDLER = Path(__file__).resolve().parents[1] / "handler"


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_ca(directory: Path, name: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    openssl(
        "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", f"{name}.key", "-out", f"{name}.pem", "-days", "2", "-subj", f"/CN={name}",
        "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign",
        cwd=directory,
    )  # fmt: skip
    return directory / f"{name}.pem"


def make_server_cert(directory: Path, ca: str) -> tuple[Path, Path]:
    (directory / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    openssl(
        "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=127.0.0.1",
        cwd=directory,
    )  # fmt: skip
    openssl(
        "x509", "-req", "-in", "server.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}.key",
        "-CAcreateserial", "-out", "server.pem", "-days", "2", "-extfile", "san.ext",
        cwd=directory,
    )  # fmt: skip
    return directory / "server.pem", directory / "server.key"


def hashed_dir(bundle: Path, target: Path) -> Path:
    subprocess.run(
        [
            "make",
            "--no-print-directory",
            "-C",
            str(HANDLER),
            "cacerts",
            f"CACERTS={target}",
            f"BUNDLE={bundle}",
        ],
        check=True,
        capture_output=True,
    )
    return target


async def https_get(verify: object, cert: Path, key: Path) -> httpx.Response:
    server_ssl = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ssl.load_cert_chain(cert, key)

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok")
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError):
            pass  # the client refused our certificate
        finally:
            writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0, ssl=server_ssl)
    port = server.sockets[0].getsockname()[1]
    try:
        async with httpx.AsyncClient(verify=verify, timeout=5) as client:  # type: ignore[arg-type]
            return await client.get(f"https://127.0.0.1:{port}/")
    finally:
        server.close()
        await server.wait_closed()


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("pki")
    trusted = make_ca(root, "trusted-ca")
    other = make_ca(root, "other-ca")
    cert, key = make_server_cert(root, "trusted-ca")
    bundle = root / "bundle.pem"
    bundle.write_text(other.read_text() + trusted.read_text())  # two roots, like certifi's many
    return {
        "cert": cert,
        "key": key,
        "trusting": hashed_dir(bundle, root / "cacerts-trusting"),
        "other_only": hashed_dir(other, root / "cacerts-other"),
    }


def test_the_build_step_names_each_root_by_its_subject_hash(pki: dict[str, Path]) -> None:
    files = sorted(p.name for p in pki["trusting"].iterdir())
    assert len(files) == 2
    assert all(name.endswith(".0") and len(name) == 10 for name in files)
    for path in pki["trusting"].iterdir():
        digest = subprocess.run(
            ["openssl", "x509", "-noout", "-subject_hash", "-in", str(path)],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
        assert path.name == f"{digest}.0"


def test_a_server_signed_by_a_root_in_the_directory_is_trusted(pki: dict[str, Path]) -> None:
    verify = tls_verify({}, pki["trusting"])
    assert not isinstance(verify, bool)
    response = asyncio.run(https_get(verify, pki["cert"], pki["key"]))
    assert response.status_code == 200
    assert response.text == "ok"


def test_a_server_signed_by_another_root_is_refused(pki: dict[str, Path]) -> None:
    verify = tls_verify({}, pki["other_only"])
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        asyncio.run(https_get(verify, pki["cert"], pki["key"]))


def test_the_operators_settings_and_a_missing_directory_mean_httpx_defaults(
    pki: dict[str, Path], tmp_path: Path
) -> None:
    assert tls_verify({"SSL_CERT_FILE": "/etc/corp-ca.pem"}, pki["trusting"]) is True
    assert tls_verify({"SSL_CERT_DIR": "/etc/corp-certs"}, pki["trusting"]) is True
    assert tls_verify({}, tmp_path / "absent") is True
