"""The built wheel is a working comet-cl: presets and suites inside, usable outside the checkout."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                            "--disable-pip-version-check", "-q", "-w", str(out), str(ROOT)],
                           capture_output=True, text=True, timeout=300)
    if build.returncode != 0:
        pytest.fail(f"pip wheel failed: {build.stderr[-2000:]}")
    return next(out.glob("comet_cl-*.whl"))


@pytest.mark.slow
def test_the_wheel_ships_every_preset_suite_and_module(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    for folder in ("presets", "suites"):
        for path in (ROOT / "comet_cl" / folder).glob("*.toml"):
            assert f"comet_cl/{folder}/{path.name}" in names
    for module in ("contract.py", "report/load.py", "report/pdf.py", "loggers.py"):
        assert f"comet_cl/{module}" in names


@pytest.mark.slow
def test_the_installed_wheel_lists_every_preset_and_suite_from_anywhere(wheel, tmp_path):
    site = tmp_path / "site"
    install = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-compile",
                              "--disable-pip-version-check", "-q", "--target", str(site), str(wheel)],
                             capture_output=True, text=True, timeout=300)
    assert install.returncode == 0, install.stderr[-2000:]
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {"PYTHONPATH": str(site)}
    run = subprocess.run([sys.executable, "-c", "import sys, comet_cl, comet_cl.cli as c; "
                          "print(comet_cl.__file__); sys.exit(c.main(['list']))"],
                         cwd=elsewhere, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.splitlines()[0].startswith(str(site))  # the wheel's copy, not the checkout
    for path in (ROOT / "comet_cl" / "presets").glob("*.toml"):
        assert f"  {path.stem} " in run.stdout, path.stem
    for path in (ROOT / "comet_cl" / "suites").glob("*.toml"):
        assert f"  {path.stem}\n" in run.stdout + "\n", path.stem
