"""The recipe is a standalone script: in a fresh folder, with only the pinned packages and the reader's copy
of the model (`--model PATH`, as its comment says), it prints exactly the app's texts for every run of the
default line-up, for each shipped model."""

import json
import os
import shutil
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
    assert str(ROOT) not in source and f"ships with Decoding Playground at assets/models/{model} " in source
    copy = shutil.copytree(ROOT / "assets" / "models" / model, tmp_path / "my copies" / model)  # the reader's
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "RECIPE_MODEL")}
    env["HF_HUB_OFFLINE"] = "1"

    def run_recipe(*args, **extra_env):
        return subprocess.run([sys.executable, "-I", str(recipe_file), *args], cwd=tmp_path, capture_output=True,
                              text=True, timeout=600, env={**env, **extra_env})

    proc = run_recipe("--model", str(copy))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout == "".join(text + "\n" for text in texts)
    if model == registry.DEFAULT_MODEL:  # the other way to point at the copy, and the sentence without one
        assert run_recipe(RECIPE_MODEL=str(copy)).stdout == proc.stdout
        missing = run_recipe()
        assert missing.returncode == 2 and missing.stdout == ""
        assert missing.stderr.splitlines()[-1] == (f"recipe.py: error: no model folder at assets/models/{model}: pass "
                                                   f"your copy of {model} with --model PATH")
    page = html_file.read_text()
    assert page.startswith("<!DOCTYPE html>") and "Plotly" in page and '<script src="http' not in page
