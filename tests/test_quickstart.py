"""The README quick start, run the way a new user would: a fresh venv and the README's code."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from conftest import ROOT, free_port

README = (ROOT / "README.md").read_text()


def _quick_start_blocks() -> tuple[str, str]:
    section = README.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    shell = re.findall(r"```bash\n(.*?)```", section, flags=re.S)[0]
    python = re.findall(r"```python\n(.*?)```", section, flags=re.S)[0]
    return shell, python


@pytest.mark.integration
@pytest.mark.timeout(600)
def test_readme_quick_start_in_a_fresh_virtual_environment(tmp_path: Path):
    shell, python = _quick_start_blocks()
    assert shell.strip() == "pip install inferwatch"
    assert len([line for line in python.splitlines() if line.strip()]) == 3
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet"]
    # "pip install inferwatch", from this checkout rather than the package index.
    subprocess.run([*pip, str(ROOT)], check=True, timeout=540)
    port = free_port()
    script = textwrap.dedent('''
        import urllib.request

        class Model:
            def predict(self, rows):
                return [0.1 * len(row) for row in rows]

        model = Model()
    ''') + python.replace("port=8000", f"port={port}, addr='127.0.0.1'") + textwrap.dedent(f'''
        assert model.predict([[1, 2, 3], [4, 5]]) == [0.30000000000000004, 0.2]
        with urllib.request.urlopen("http://127.0.0.1:{port}/metrics") as response:
            print(response.read().decode())
    ''')
    (tmp_path / "quickstart.py").write_text(script)
    result = subprocess.run([str(venv / "bin" / "python"), "quickstart.py"], cwd=tmp_path,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    body = result.stdout
    assert 'inferwatch_requests_total{model="fraud",model_version="1.4.2",outcome="ok"} 1.0' \
        in body
    assert 'inferwatch_batch_size_sum{model="fraud",model_version="1.4.2"} 2.0' in body
    assert 'inferwatch_prediction_count{model="fraud",model_version="1.4.2",output="value"} 2.0' \
        in body
