"""`make lab` starts JupyterLab at notebooks/, with nbgrader's extensions loaded."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from envtools import free_port

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow



class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def test_make_lab_serves_the_notebooks(tmp_path):
    port, token = free_port(), "course-test-token"
    args = f"--no-browser --port {port} --ServerApp.ip=127.0.0.1 --IdentityProvider.token={token}"
    env = {**os.environ, "JUPYTER_RUNTIME_DIR": str(tmp_path)}
    proc = subprocess.Popen(
        ["make", "--no-print-directory", "lab", f"LAB_ARGS={args}"], cwd=ROOT, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        opener = urllib.request.build_opener(_NoRedirect)
        deadline = time.time() + 90
        while True:
            try:
                opener.open(f"{base}/?token={token}", timeout=5)
            except urllib.error.HTTPError as redirect:  # 302 is what we want to see
                location = redirect.headers["Location"]
                break
            except OSError:
                if time.time() > deadline or proc.poll() is not None:
                    pytest.fail("JupyterLab did not start:\n" + (proc.stdout.read() if proc.poll() is not None else ""))
                time.sleep(1)
        assert "/lab/tree/notebooks" in location
        listing = urllib.request.urlopen(f"{base}/api/contents/notebooks/00_welcome?token={token}", timeout=10).read()
        assert b"welcome.ipynb" in listing
        page = urllib.request.urlopen(f"{base}/lab/tree/notebooks?token={token}", timeout=10).read()
        assert b"@jupyter/nbgrader" in page  # the lab extension (Validate button) is served
        # No "Would you like to get notified about official Jupyter news?" pop-up over the first notebook:
        # the course's overrides make "Never" the default of the setting that would otherwise ask.
        plugin = "@jupyterlab/apputils-extension:notification"
        url = f"{base}/lab/api/settings/{plugin}?token={token}"
        settings = json.loads(urllib.request.urlopen(url, timeout=10).read())
        assert settings["schema"]["properties"]["fetchNews"]["default"] == "false", settings["schema"]["properties"]
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
