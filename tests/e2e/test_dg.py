"""The `dg` CLI: the registered component, scaffolding it, and the example as a dg project."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLE_DIR = Path(__file__).resolve().parents[2] / "example_project"
DG = Path(sys.executable).with_name("dg")


def dg(*args: str, cwd: Path, **env: str) -> str:
    """Run `dg`; return its output; fail with it when the command fails."""
    clean = {
        k: v for k, v in os.environ.items() if k not in ("BITRIX24_WEBHOOK_URL", "WAREHOUSE_URL")
    }
    done = subprocess.run(
        [str(DG), *args], cwd=cwd, env={**clean, "DAGSTER_DISABLE_TELEMETRY": "1", **env},
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, f"dg {' '.join(args)}:\n{done.stdout}\n{done.stderr[-3000:]}"
    return done.stdout + done.stderr


def _dg_project(root: Path, module: str, definitions_py: str) -> Path:
    """A new dg project in `root` whose package `module` has an empty defs folder and
    `definitions_py`; return the package's folder."""
    (root / "pyproject.toml").write_text(
        f'[project]\nname = "{module.replace("_", "-")}"\nversion = "0"\n\n'
        f'[tool.dg]\ndirectory_type = "project"\n\n[tool.dg.project]\nroot_module = "{module}"\n'
    )
    package = root / module
    (package / "defs").mkdir(parents=True)
    (package / "__init__.py").touch()
    (package / "defs" / "__init__.py").touch()
    (package / "definitions.py").write_text(definitions_py)
    return package


@pytest.mark.slow
def test_scaffolded_defs_yaml_loads_in_a_new_dg_project(tmp_path):
    package = _dg_project(
        tmp_path, "new_project",
        "from pathlib import Path\n\nfrom dagster import definitions, load_from_defs_folder\n\n\n"
        "@definitions\ndef defs():\n"
        "    return load_from_defs_folder(path_within_project=Path(__file__).parent)\n",
    )  # fmt: skip
    assert "dagster_bitrix24.Bitrix24Component" in dg("list", "components", cwd=tmp_path)

    dg("scaffold", "defs", "dagster_bitrix24.Bitrix24Component", "crm", cwd=tmp_path)
    written = (package / "defs" / "crm" / "defs.yaml").read_text()
    assert "type: dagster_bitrix24.Bitrix24Component" in written and "crm.deal" in written
    assert "All definitions loaded successfully" in dg("check", "defs", cwd=tmp_path)
    listed = dg("list", "defs", "--json", cwd=tmp_path)
    assert "bitrix24/crm_deal" in listed and "bitrix24_default_schedule" in listed


@pytest.mark.slow
def test_the_example_is_a_dg_project(tmp_path):
    data = str(tmp_path / "data")  # `dg check defs` on it: the fixture of test_dagster_dev
    listed = dg("list", "defs", "--json", cwd=EXAMPLE_DIR, BITRIX24_EXAMPLE_DATA_DIR=data)
    for name in ("bitrix24/crm_deal", "bitrix24/user", "sales_funnel", "bitrix24_hourly"):
        assert name in listed


@pytest.mark.slow
def test_two_scaffolded_portals_beside_a_python_bound_resource_load_with_key_prefix(tmp_path):
    package = _dg_project(  # the example's way: resources bound in Python
        tmp_path, "two_portals",
        "from pathlib import Path\n\n"
        "from dagster import Definitions, EnvVar, definitions, load_from_defs_folder\n\n"
        "from dagster_bitrix24 import Bitrix24Resource, SQLWarehouseResource, "
        "build_bitrix24_assets\n\n\n"
        "@definitions\ndef defs():\n"
        "    return Definitions.merge(\n"
        "        load_from_defs_folder(path_within_project=Path(__file__).parent),\n"
        "        Definitions(\n"
        "            assets=[build_bitrix24_assets(entities=['crm.company'], name='python')],\n"
        "            resources={'bitrix24': Bitrix24Resource("
        "webhook_url=EnvVar('BITRIX24_WEBHOOK_URL')),\n"
        "                       'warehouse': SQLWarehouseResource(url='sqlite:///w.sqlite')},\n"
        "        ),\n"
        "    )\n",
    )  # fmt: skip
    for name in ("acme", "globex"):
        dg("scaffold", "defs", "dagster_bitrix24.Bitrix24Component", name, cwd=tmp_path)
    check = subprocess.run(
        [str(DG), "check", "defs"], cwd=tmp_path, capture_output=True, text=True, timeout=120,
        env={**os.environ, "DAGSTER_DISABLE_TELEMETRY": "1"},
    )  # fmt: skip
    assert check.returncode != 0  # as scaffolded, both take the keys bitrix24 and warehouse
    assert "same key" in check.stdout + check.stderr

    for name in ("acme", "globex"):
        path = package / "defs" / name / "defs.yaml"
        path.write_text(path.read_text() + f"  key_prefix: {name}\n")
    assert "All definitions loaded successfully" in dg("check", "defs", cwd=tmp_path)
    listed = dg("list", "defs", "--json", cwd=tmp_path)
    for key in ("acme/bitrix24/crm_deal", "globex/bitrix24/crm_deal", "bitrix24/crm_company"):
        assert key in listed
    for name in ("bitrix24_acme_schedule", "bitrix24_globex_schedule"):
        assert name in listed
