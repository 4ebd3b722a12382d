"""The Python API: a light ``import comet_cl``, and README's example run exactly as written."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import require_data

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"


def _python(code: str, cwd: Path, timeout: int = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    if DATA.is_dir():
        env["COMET_CL_DATA"] = str(DATA)
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)


def _readme_blocks(section: str) -> list[str]:
    text = (ROOT / "README.md").read_text()
    body = text.split(f"## {section}\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", body, flags=re.S)


def test_import_is_light_and_exports_resolve_lazily(tmp_path):
    run = _python("import sys, comet_cl\n"
                  "heavy = [m for m in ('torch', 'avalanche', 'matplotlib', 'pandas') if m in sys.modules]\n"
                  "assert not heavy, heavy\n"
                  "assert not any('QP solver' in str(f[1]) for f in __import__('warnings').filters)\n"
                  "assert comet_cl.load_results.__module__ == 'comet_cl.report.load'\n"
                  "assert 'matplotlib' not in sys.modules\n"
                  "print(sorted(comet_cl.__all__))", tmp_path)
    assert run.returncode == 0, run.stderr
    assert "build_model" in run.stdout and "make_stream" in run.stdout and "run_suite" in run.stdout


def test_an_unknown_name_is_an_attribute_error():
    import comet_cl
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        comet_cl.nope  # noqa: B018


def test_load_results_gives_a_frame_of_recomputed_metrics(tmp_path):
    run = _python("import sys, comet_cl\n"
                  f"f = comet_cl.load_results({str(ROOT / 'tests/fixtures/results-v1')!r})\n"
                  "assert 'matplotlib' not in sys.modules\n"
                  "print(sorted(f.strategy), round(float(f.set_index('strategy').acc['joint']), 4))",
                  tmp_path)
    assert run.returncode == 0, run.stderr
    assert "['comet', 'joint', 'naive'] 0.9" in run.stdout


@pytest.mark.slow
def test_the_readme_example_runs_as_written(tmp_path):
    require_data("mnist")
    example = _readme_blocks("Use from Python")[0]
    run = _python(example, tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    acc = float(re.search(r"accuracy over the five experiences: ([0-9.]+)", run.stdout).group(1))
    assert 0.1 < acc <= 1.0  # class-incremental, naive: mostly the last experience's classes
