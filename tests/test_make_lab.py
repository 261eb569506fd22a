"""`make lab` starts a JupyterLab that serves notebooks/, on loopback only, with a token."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # starts a server: outside the quick tier

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_status(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as err:
        return err.code, b""


def test_make_lab_serves_the_notebooks_with_a_token(tmp_path: Path) -> None:
    port = free_port()
    env = os.environ | {"JUPYTER_RUNTIME_DIR": str(tmp_path), "BROWSER": "true"}
    log = tmp_path / "lab.log"
    with log.open("w") as out:
        proc = subprocess.Popen(["make", "-s", "lab", f"LAB_ARGS=--port={port} --no-browser"],
                                cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, env=env,
                                start_new_session=True)
    try:
        token = None
        deadline = time.monotonic() + 60
        while token is None and time.monotonic() < deadline:
            assert proc.poll() is None, f"make lab exited early:\n{log.read_text()}"
            match = re.search(rf"http://127\.0\.0\.1:{port}/lab\?token=(\w+)", log.read_text())
            token = match.group(1) if match else None
            time.sleep(0.2)
        assert token, f"no login link with a token in time:\n{log.read_text()}"
        base = f"http://127.0.0.1:{port}/api/contents"
        assert http_status(base)[0] == 403  # token authentication is on
        status, body = http_status(f"{base}?token={token}")
        assert status == 200
        names = {item["name"] for item in json.loads(body)["content"]}
        assert "00_start_here.ipynb" in names and "solutions" in names
        # no news pop-up: JupyterLab's page config says so
        status, page = http_status(f"http://127.0.0.1:{port}/lab?token={token}")
        assert status == 200
        config = json.loads(re.search(rb'id="jupyter-config-data"[^>]*>(.*?)</script>', page,
                                      re.DOTALL).group(1))
        assert config["news"] == {"disabled": True}
        assert "news_url" not in config or config["news_url"] is None
        # loopback only: the server listens on 127.0.0.1, not on every interface
        if shutil.which("ss"):
            listening = subprocess.run(["ss", "-ltnH", f"sport = :{port}"],
                                       capture_output=True, text=True).stdout
            assert listening and all("127.0.0.1:" in line for line in listening.splitlines())
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=20)
