"""The `bitrix24-emulator` console script and `python -m bitrix_core.emulator`, as processes."""

import json
import re
import signal
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

SCRIPT = Path(sys.executable).with_name("bitrix24-emulator")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.parametrize("command", [[str(SCRIPT)], [sys.executable, "-m", "bitrix_core.emulator"]],
                         ids=["console-script", "python-m"])
@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_cli_prints_the_webhook_url_serves_and_exits_cleanly(command, stop):
    port = _free_port()
    process = subprocess.Popen(
        [*command, "--host", "127.0.0.1", "--port", str(port), "--seed", "1", "--deals", "60",
         "--plan", "standard", "--time-scale", "0.01"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        line = process.stdout.readline()
        match = re.search(rf"http://127\.0\.0\.1:{port}/rest/1/(\w+)/", line)
        assert match, line
        with urllib.request.urlopen(match.group(0) + "crm.deal.list?start=0", timeout=10) as r:
            body = json.loads(r.read())
        assert body["total"] == 60 and len(body["result"]) == 50
        process.send_signal(stop)
        assert process.wait(timeout=10) == 0
        assert process.stdout.read() == ""
        assert match.group(1) not in process.stderr.read()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_cli_rejects_bad_options():
    result = subprocess.run([str(SCRIPT), "--plan", "gold"], capture_output=True, text=True,
                            timeout=30)
    assert result.returncode == 2 and "invalid choice" in result.stderr
    result = subprocess.run([str(SCRIPT), "--time-scale", "0"], capture_output=True, text=True,
                            timeout=30)
    assert result.returncode == 2 and "--time-scale" in result.stderr
