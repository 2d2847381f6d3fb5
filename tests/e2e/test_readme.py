"""Every Python snippet of the README runs, against an emulated portal instead of yours.

A snippet reads the portal from the environment (`BITRIX24_WEBHOOK_URL`, and for OAuth
`BITRIX24_PORTAL_URL`, `BITRIX24_CLIENT_ID`, ...); here those point at the emulator. A
snippet defining `test_*` functions has them called with the `bitrix24_portal` fixture.
"""

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[2] / "README.md"
SNIPPETS = re.findall(r"```python\n(.*?)```", README.read_text(), re.DOTALL)


def test_the_readme_has_python_snippets():
    assert len(SNIPPETS) >= 6


def test_quick_start_test_command_is_the_ci_command():
    blocks = re.findall(r"```bash\n(.*?)```", README.read_text().split("## Quick start")[1], re.DOTALL)
    ci = (README.parent / ".ci" / "run").read_text()
    install = re.search(r"^\.venv/bin/python -m pip install --quiet (-e .*)$", ci, re.MULTILINE)
    test_command = ci.splitlines()[-1]
    assert test_command.startswith(".venv/bin/python -m pytest -q")
    assert blocks[1].strip() == (
        f"python3 -m venv .venv && .venv/bin/python -m pip install {install.group(1)}"
        f" && {test_command}"
    )


@pytest.mark.bitrix24_portal(deals=60, plan="standard", time_scale=0.01)
@pytest.mark.parametrize("index", range(len(SNIPPETS)))
def test_snippet_runs(index, bitrix24_portal, tmp_path, monkeypatch):
    app = bitrix24_portal.oauth_client()
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("BITRIX24_WEBHOOK_URL", bitrix24_portal.webhook_url)
    monkeypatch.setenv("BITRIX24_PORTAL_URL", f"{app.portal_url}/rest/")
    monkeypatch.setenv("BITRIX24_CLIENT_ID", app.client_id)
    monkeypatch.setenv("BITRIX24_CLIENT_SECRET", app.client_secret)
    monkeypatch.setenv("BITRIX24_TOKEN_FILE", str(tmp_path / "tokens.json"))
    monkeypatch.setenv("BITRIX24_OAUTH_SERVER", app.portal_url)
    monkeypatch.setenv("BITRIX24_AUTH_CODE", bitrix24_portal.issue_auth_code())
    namespace: dict = {"__name__": f"readme_snippet_{index}"}
    exec(compile(SNIPPETS[index], f"README.md snippet {index}", "exec"), namespace)
    for name, value in namespace.items():
        if name.startswith("test_") and callable(value):
            value(bitrix24_portal)
    if "BITRIX24_AUTH_CODE" in SNIPPETS[index]:
        assert (tmp_path / "tokens.json").exists()
