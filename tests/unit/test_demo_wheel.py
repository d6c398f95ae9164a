"""``dxapi demo`` works from the built wheel, installed into a fresh venv, run outside the source tree.

The sources are copied to a temp dir and built there the way the Dockerfile builds them (``pip wheel``, with
build isolation), so nothing is written into the work tree. The wheel goes into a new venv that holds no
other package; its dependencies are borrowed read-only from the running interpreter's site-packages through a
``.pth`` line (appended after the venv's own site-packages, so ``dxapi`` itself can only come from the wheel —
asserted below), which keeps the test offline after the build and within seconds. ``dxapi demo`` then runs in
an empty directory on a free port: it must build the shop, print working credentials, and answer a token
request, a data read, the docs page and the back-office login page (files that only the wheel can supply).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import site
import socket
import subprocess
import sys
import time
import venv
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]
START_WITHIN = 60.0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _clean_environment() -> dict[str, str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("DXAPI_", "PYTHON", "VIRTUAL_ENV"))}
    return {**environment, "PYTHONUNBUFFERED": "1"}


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with the wheel of the current sources installed; returns its ``bin`` directory."""
    base = tmp_path_factory.mktemp("wheel")
    source = base / "src"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, source / name)
    shutil.copytree(ROOT / "dxapi", source / "dxapi", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    wheels = base / "wheels"
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(wheels), str(source)],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=base,
        env=_clean_environment(),
    )
    assert built.returncode == 0, built.stdout + built.stderr
    (wheel,) = wheels.glob("dxapi-*.whl")

    environment = base / "venv"
    venv.EnvBuilder(with_pip=False).create(environment)
    python = environment / "bin" / "python"
    done = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "-q", str(wheel)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=base,
        env=_clean_environment(),
    )
    assert done.returncode == 0, done.stdout + done.stderr
    own = subprocess.run(
        [str(python), "-c", "import site; print(site.getsitepackages()[0])"],
        capture_output=True,
        text=True,
        check=True,
        cwd=base,
        env=_clean_environment(),
    )
    Path(own.stdout.strip(), "borrowed-dependencies.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    where = subprocess.run(
        [str(python), "-c", "import dxapi; print(dxapi.__file__)"],
        capture_output=True,
        text=True,
        check=True,
        cwd=base,
        env=_clean_environment(),
    )
    assert Path(where.stdout.strip()).is_relative_to(environment), where.stdout  # the wheel, not the sources
    return environment / "bin"


@pytest.fixture
def demo(installed: Path, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """``dxapi demo`` running in an empty directory; yields its base URL and its log file's text reader."""
    port = _free_port()
    log_path = tmp_path / "demo.log"
    environment = {**_clean_environment(), "DXAPI_HOST": "127.0.0.1", "DXAPI_PORT": str(port)}
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [str(installed / "dxapi"), "demo"],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=tmp_path,
            env=environment,
            start_new_session=True,
        )
    base_url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_WITHIN
        while True:
            assert process.poll() is None, f"dxapi demo exited with {process.returncode}:\n{log_path.read_text()}"
            assert time.monotonic() < deadline, f"dxapi demo not ready:\n{log_path.read_text()}"
            try:
                if httpx.get(f"{base_url}/health/ready", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        yield base_url, str(log_path)
    finally:
        if process.poll() is None:  # its own session: the signal reaches the server and nothing else
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=15)


@pytest.mark.timeout(240)
def test_demo_runs_from_the_installed_wheel(demo: tuple[str, str], tmp_path: Path) -> None:
    base_url, log_path = demo
    output = Path(log_path).read_text()
    found = re.search(r"OAuth client\s+(\S+) / (\S+)", output)
    assert found, output
    assert (tmp_path / "demo-data" / "shop.db").is_file()  # built where it was started, not in the package

    form = {"grant_type": "client_credentials", "client_id": found.group(1), "client_secret": found.group(2)}
    token = httpx.post(f"{base_url}/token", data=form, timeout=10)
    assert token.status_code == 200, token.text
    headers = {"Authorization": f"Bearer {token.json()['access_token']}"}
    with httpx.Client(base_url=base_url, headers=headers, timeout=10) as client:
        products = client.get("/dynamic-entity/products", params={"page[limit]": 2, "include": "productStocks"})
        assert products.status_code == 200, products.text
        rows = products.json()["data"]
        assert len(rows) == 2 and rows[0]["idProduct"] == 1 and isinstance(rows[0]["productStocks"], list), rows
        countries = client.get("/dynamic-entity/countries", params={"page[limit]": 500})
        assert countries.status_code == 200 and len(countries.json()["data"]) >= 40, countries.text
        assert client.get("/dynamic-entity/openapi.json").status_code == 200
    docs = httpx.get(f"{base_url}/dynamic-entity/docs", timeout=10)
    assert docs.status_code == 200 and "<html" in docs.text.lower(), docs.text[:200]
    assert httpx.get(f"{base_url}/dynamic-entity/static/docs.js", timeout=10).status_code == 200
    login = httpx.get(f"{base_url}/admin/login", timeout=10)
    assert login.status_code == 200 and "password" in login.text.lower(), login.text[:200]
