"""No export names the machine that made it (issue 24): every download of every page (Streamlit's AppTest,
each button's file built as a click builds it) and every file and JSON of the command line is searched for
the project's folder, the home folder, the user name and the host name (`conftest.machine_names_in` says
how), and for the folders the test made. A folder model is named by its folder's own name, and its recipe
says how to point at the reader's copy.
"""

import json
import shutil
from pathlib import Path

import pytest
from streamlit.runtime.media_file_manager import MediaFileManager
from streamlit.testing.v1 import AppTest
from streamlit.testing.v1 import app_test

from conftest import ROOT, machine_names_in
from core.cli import main
from core.playground import DecodeResult
from core.views import recipe

PAGES = {  # each page with a cheap state; the branch on Step through puts a second line into its export
    "pages/1_compare.py": {"max_new_tokens": 6, "prompt": "Romeo.\n"},
    "pages/2_step_through.py": {"max_new_tokens": 6, "branches": "1:11"},
    "pages/3_sampling_lab.py": {"max_new_tokens": 6},
    "pages/4_beam_search.py": {"max_new_tokens": 6, "num_beams": 3},
    "pages/5_models_and_tokens.py": {},
    "pages/6_score_a_text.py": {},
    "pages/7_report.py": {"max_new_tokens": 6, "samples": 2},
    "pages/8_pipeline.py": {"max_new_tokens": 6, "run": 3, "step": 2},
    "pages/9_speculative_decoding.py": {"max_new_tokens": 6},
    "pages/10_watermark_lab.py": {"max_new_tokens": 8, "false_positives": "false"},
}
EXPORTS = {  # what the pages offer today: each must be found (any other download is searched too)
    "pages/1_compare.py": {"JSON", "CSV", "Markdown", "HTML page", "Recipe"},
    "pages/2_step_through.py": {"Download as one HTML page"},
    "pages/4_beam_search.py": {"Download this page as one HTML file"},
    "pages/7_report.py": {"CSV (the table)", "JSON (figures and samples)"},
    "pages/8_pipeline.py": {"JSON"},
}


@pytest.fixture
def downloads(monkeypatch):
    """A function from a finished AppTest to its downloads ({label: bytes}), each built as a click builds
    it: a deferred one's callable runs outside the script run, in another thread's place, as the server runs
    it when the button is clicked."""
    managers = []

    class Recording(MediaFileManager):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            managers.append(self)

    monkeypatch.setattr(app_test, "MediaFileManager", Recording)

    def read(at) -> dict[str, bytes]:
        files = {}
        for button in at.download_button:
            proto = button.proto
            url = managers[-1].execute_deferred(proto.deferred_file_id) if proto.deferred_file_id else proto.url
            files[button.label] = managers[-1].read_file(url.rsplit("/", 1)[-1]).content
        return files

    return read


def run_page(path: str, **params) -> AppTest:
    at = AppTest.from_file(str(ROOT / path), default_timeout=300)
    for key, value in {**PAGES[path], **params}.items():
        at.query_params[key] = str(value)
    at.run()
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    return at


def assert_anonymous(files: dict[str, str | bytes], *folders: Path) -> None:
    leaks = {name: found for name, text in files.items() if (found := machine_names_in(text, *folders))}
    assert not leaks, leaks


def test_no_download_of_a_sweep_names_this_machine(downloads):
    files = downloads(run_page("pages/7_report.py", mode="sweep", sweep="top_p=0.5,1.0", samples=2))
    assert {"CSV (the points)", "JSON (figures and samples)"} <= set(files), sorted(files)
    assert all(files.values())
    assert_anonymous(files)
    assert [p["value"] for p in json.loads(files["JSON (figures and samples)"])["sweeps"][0]["points"]] == [0.5, 1.0]


@pytest.mark.parametrize("path", PAGES)
def test_no_download_of_any_page_names_this_machine(path, downloads):
    files = downloads(run_page(path))
    assert EXPORTS.get(path, set()) <= set(files), sorted(files)
    assert all(files.values())
    assert_anonymous(files)
    if path == "pages/1_compare.py":  # the recipe the page hands out names the model the way a reader gets it
        assert "# Model: shakespeare-gpt2 ships with Decoding Playground at assets/models/shakespeare-gpt2 " \
               in files["Recipe"].decode()
        assert json.loads(files["JSON"])["recipe"]["source"] == "assets/models/shakespeare-gpt2"


def test_a_model_from_the_operators_folders_is_named_by_its_folder(tmp_path, monkeypatch, downloads):
    extra = tmp_path / "operator models"
    shutil.copytree(ROOT / "assets" / "models" / "shakespeare-lstm", extra / "my-lstm")
    monkeypatch.setenv("PLAYGROUND_MODEL_DIRS", str(extra))
    files = downloads(run_page("pages/1_compare.py", model="my-lstm", lineup="greedy"))
    assert_anonymous(files, tmp_path)
    rec = json.loads(files["JSON"])["recipe"]
    assert rec["model"] == rec["source"] == "my-lstm" and rec["source_kind"] == "folder"
    assert "--model PATH (or RECIPE_MODEL=PATH)" in files["Recipe"].decode()


def cli(capsys, *argv) -> str:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert code == 0, err
    return out


def test_no_export_of_the_command_line_names_this_machine(tmp_path, tiny_dir, monkeypatch, capsys):
    """The files (--recipe, --html) and the JSON on stdout of every command that makes them, on the default
    model and on a folder model given as the command line takes it (`--model ./my-model`, and by its path)."""
    work = tmp_path / "work"
    shutil.copytree(tiny_dir, work / "my-model")
    monkeypatch.chdir(work)
    files = {}
    for model in ("shakespeare-gpt2", "./my-model", work / "my-model"):
        for command in ("compare", "decode"):
            stem = f"{command}-{Path(str(model)).name}"
            extra = ["--lineup", "greedy;beam(num_beams=3)"] if command == "compare" else ["--strategy", "beam"]
            files[f"{stem}.json"] = cli(capsys, command, "--model", model, "--prompt", "Romeo.", "--max-new-tokens", 4,
                                        *extra, "--recipe", f"{stem}.py", "--html", f"{stem}.html", "--json")
            files[f"{stem}.py"] = Path(f"{stem}.py").read_text(encoding="utf-8")
            files[f"{stem}.html"] = Path(f"{stem}.html").read_text(encoding="utf-8")
        files[f"score-{Path(str(model)).name}.json"] = cli(capsys, "score", "--model", model, "--text", "Romeo. Hark!",
                                                           "--json")
    files["report.json"] = cli(capsys, "report", "--model", "./my-model", "--prompt", "Romeo.", "--samples", 2,
                               "--max-new-tokens", 4, "--lineup", "greedy;sample(top_k=0)", "--human-count", 2, "--json")
    assert_anonymous(files, tmp_path)
    # the folder model is named by its folder's own name, however it was given ...
    for name, text in files.items():
        if name.endswith(".json") and "shakespeare" not in name:
            assert json.loads(text)["model"] == "my-model", name
    # ... and its recipe looks for it by that name and says how to point at the reader's copy
    source = files["compare-my-model.py"]
    assert "default=os.environ.get('RECIPE_MODEL', 'my-model')" in source
    assert ("# Model: my-model is a model folder of the machine that made this recipe (looked for as ./my-model); "
            "pass your copy with --model PATH (or RECIPE_MODEL=PATH).") in source.splitlines()


def test_a_hub_models_recipe_names_its_hub_id():
    """GPT-2's weights are not on this machine (no network here): the recipe of a result made with them."""
    result = DecodeResult("gpt2", "cpu", [15496], "Hello", [], loaded_from="gpt2")
    snippet = recipe.generate_snippet(recipe.recipe(result, [], "Hello"))
    assert ("# Model: gpt2 is openai-community/gpt2 on the Hugging Face hub (downloaded on first use); for a copy "
            "saved with save_pretrained, pass --model PATH (or RECIPE_MODEL=PATH).") in snippet.splitlines()
    assert "os.environ.get('RECIPE_MODEL', 'openai-community/gpt2')" in snippet
    assert not machine_names_in(snippet)
