"""The layout's import contracts cover every module, including ones added later."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_no_cli_imports_contract_lists_every_module_that_is_not_a_cli() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    (contract,) = [c for c in config["contracts"] if c["name"] == "nothing imports a command-line module"]
    listed = set(contract["source_modules"])
    for package in ("simulator", "conformance"):
        for path in sorted((ROOT / package).iterdir()):
            name = path.stem if path.suffix == ".py" else path.name
            is_module = path.suffix == ".py" or (path / "__init__.py").exists()
            if not is_module or name == "__init__" or name.startswith("cli"):
                continue
            assert f"{package}.{name}" in listed, f"{package}.{name} is missing from the contract (pyproject.toml)"
