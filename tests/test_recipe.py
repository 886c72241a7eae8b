"""The recipe is a standalone script: in a fresh folder, with only the pinned packages and the model, it
prints exactly the app's texts for every run of the default line-up, for each shipped model."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from core.models import registry
from core.cli import main

ROOT = Path(__file__).resolve().parents[1]


def run_cli(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert code == 0, err
    return out


@pytest.mark.parametrize("model", sorted(registry.shipped_models()))
def test_the_recipe_prints_the_apps_texts_from_a_fresh_folder(capsys, tmp_path, model):
    recipe_file = tmp_path / "recipe.py"
    html_file = tmp_path / "run.html"
    out = run_cli(capsys, "compare", "--model", model, "--prompt", "To be, or not to be", "--max-new-tokens", 24,
                  "--seed", 3, "--json", "--recipe", recipe_file, "--html", html_file)
    texts = [run["text"] for run in json.loads(out)["runs"]]
    source = recipe_file.read_text()
    assert "import core" not in source and "from core" not in source
    assert "dtype=torch.float32" in source  # the app's dtype on the CPU, not the checkpoint's fp16
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run([sys.executable, "-I", str(recipe_file)], cwd=tmp_path, capture_output=True, text=True,
                          timeout=600, env={**env, "HF_HUB_OFFLINE": "1"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout == "".join(text + "\n" for text in texts)
    page = html_file.read_text()
    assert page.startswith("<!DOCTYPE html>") and "Plotly" in page and '<script src="http' not in page
