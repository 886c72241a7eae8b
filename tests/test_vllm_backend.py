"""The vLLM backend against a real vLLM server (CPU build), started here by scripts/vllm_server.sh on
127.0.0.1 with the shipped GPT-2-architecture model, and the local engine on the same weights as the
reference. The server's venv is built once per machine and reused; a server that cannot be built or
started fails these tests (it never skips them)."""

import json
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from hypothesis import given, settings as hsettings, strategies as st

from core.backends import open_playground
from core.backends.vllm import VLLMPlayground, connect
from core.backends.vllm_client import check_server_url
from core.decoding.settings import DecodeSettings
from core.errors import InvalidSetting, PlaygroundError
from core.playground import Playground, default_lineup

ROOT = Path(__file__).resolve().parents[1]
MODEL = "shakespeare-gpt2"
PROMPTS = ["ROMEO.\n", "To be, or not to be", "Enter the King, with his train.", "O, what a noble mind is here"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server_url():
    port = _free_port()
    script = ROOT / "scripts" / "vllm_server.sh"
    proc = subprocess.run(["bash", str(script), "start", str(ROOT / "assets" / "models" / MODEL), str(port)],
                          capture_output=True, text=True, timeout=2400)
    assert proc.returncode == 0, f"the vLLM server did not start:\n{proc.stderr[-3000:]}"
    yield proc.stdout.strip().splitlines()[-1]
    subprocess.run(["bash", str(script), "stop", str(port)], capture_output=True, timeout=120)
    with pytest.raises(PlaygroundError):  # stopped for real: nothing answers any more
        connect(f"http://127.0.0.1:{port}", MODEL)


@pytest.fixture(scope="module")
def remote(server_url) -> VLLMPlayground:
    return connect(server_url, MODEL)


@pytest.fixture(scope="module")
def remote_full(server_url) -> VLLMPlayground:
    return connect(server_url, MODEL, full_vocabulary=True)


@pytest.fixture(scope="module")
def local() -> Playground:
    return Playground.load(MODEL, device="cpu")


def test_greedy_ids_logprobs_and_alternatives_equal_the_local_engine(remote, local):
    s = DecodeSettings("greedy", max_new_tokens=24)
    worst = 0.0
    for prompt in PROMPTS:
        there, here = remote.decode(prompt, s).runs[0].best, local.decode(prompt, s).runs[0].best
        assert there.ids == here.ids, prompt
        for a, b in zip(there.steps, here.steps):
            worst = max(worst, abs(a.logprob - b.logprob))
            # the top-N alternatives: the same ids in the same order, wherever their probabilities differ
            # by more than the two implementations' float error
            for x, y in zip(a.top, b.top):
                assert abs(x.prob - y.prob) < 1e-4
                if x.id != y.id:
                    assert abs(x.prob - next(c.prob for c in a.top if c.id == y.id)) < 1e-4
            assert a.rank == b.rank == 1
            assert a.processed_logprob == a.logprob  # greedy: no processor, processed is raw
        assert there.finish_reason == here.finish_reason
    assert worst < 1e-4


def test_seeded_sampling_is_reproducible_and_seed_dependent(remote):
    s = DecodeSettings("sample", temperature=0.9, top_k=40, top_p=0.95, max_new_tokens=16, seed=7,
                       num_return_sequences=2)
    first = remote.decode(PROMPTS[0], s).runs[0]
    again = remote.decode(PROMPTS[0], s).runs[0]
    other = remote.decode(PROMPTS[0], s.replace(seed=8)).runs[0]
    assert [q.ids for q in first.sequences] == [q.ids for q in again.sequences]
    assert len(first.sequences) == 2 and first.sequences[0].ids != first.sequences[1].ids
    assert [q.ids for q in first.sequences] != [q.ids for q in other.sequences]
    for step in first.best.steps:  # without the whole vocabulary the processed distribution is unknown
        assert step.processed_logprob is None and step.entropy is None and step.curve == []


def test_beam_output_equals_the_local_engine(remote, local):
    for prompt in PROMPTS[:3]:
        s = DecodeSettings("beam", num_beams=4, num_return_sequences=2, max_new_tokens=16)
        there, here = remote.decode(prompt, s).runs[0], local.decode(prompt, s).runs[0]
        assert [q.ids for q in there.sequences] == [q.ids for q in here.sequences], prompt
        assert there.beam_tree is None and here.beam_tree
        for a, b in zip(there.sequences, here.sequences):
            assert a.sequence_logprob == pytest.approx(b.sequence_logprob, abs=1e-3)
            assert a.beam_score == pytest.approx(b.beam_score, abs=1e-4)


def test_scoring_equals_local_scoring(remote, local):
    text = "ROMEO. But soft, what light through yonder window breaks?"
    there, here = remote.score(text), local.score(text)
    assert [t.id for t in there.tokens] == [t.id for t in here.tokens]
    assert [t.rank for t in there.tokens] == [t.rank for t in here.tokens]
    assert [t.top_id for t in there.tokens] == [t.top_id for t in here.tokens]
    assert max(abs(a.logprob - b.logprob) for a, b in zip(there.tokens, here.tokens)) < 1e-4
    assert there.perplexity == pytest.approx(here.perplexity, rel=1e-4)


def test_whole_vocabulary_gives_the_local_engines_figures(remote_full, local):
    """With the whole raw distribution, the entropy, the curve and the processed distribution (our
    processors on the server's raw log-probs) are the local engine's along the same tokens."""
    s = DecodeSettings("sample", temperature=0.7, top_k=20, top_p=0.9, max_new_tokens=8, seed=3)
    there = remote_full.decode(PROMPTS[1], s).runs[0].best
    here = local.decode(PROMPTS[1], s, forced_ids=there.ids).runs[0].best
    for a, b in zip(there.steps, here.steps):
        assert a.rank == b.rank and a.processed_rank == b.processed_rank
        assert a.kept == b.kept and a.kept["top_k"] == 20
        assert a.entropy == pytest.approx(b.entropy, abs=1e-3)
        assert a.processed_logprob == pytest.approx(b.processed_logprob, abs=1e-4)
        assert [c.id for c in a.top[:3]] == [c.id for c in b.top[:3]]
        assert a.curve[-1][1] == pytest.approx(1.0, abs=1e-4)


def test_the_default_lineup_runs_what_vllm_can_and_names_the_rest(remote):
    result = remote.compare(PROMPTS[0], default_lineup(max_new_tokens=8))
    names = [r.name for r in result.runs]
    assert "beam 5 + no-repeat 2" not in names and "greedy" in names and len(names) == 7
    assert any("Skipped on the vLLM backend: beam 5 + no-repeat 2 (vLLM's API has no no_repeat_ngram_size)." == n
               for n in result.notices)
    assert all(len(r.best.ids) == 8 for r in result.runs)


def test_eight_concurrent_sessions_each_get_what_they_get_alone(remote):
    lineup = [DecodeSettings("greedy", max_new_tokens=12), DecodeSettings("sample", max_new_tokens=12, seed=5)]
    prompts = PROMPTS * 2
    alone = [[r.best.ids for r in remote.compare(p, lineup).runs] for p in prompts]
    together: list = [None] * len(prompts)

    def session(i):
        together[i] = [r.best.ids for r in remote.compare(prompts[i], lineup).runs]

    threads = [threading.Thread(target=session, args=(i,)) for i in range(len(prompts))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert together == alone


def test_the_command_line_decodes_on_the_server(server_url, local):
    proc = subprocess.run([sys.executable, "-m", "core", "decode", "--backend", "vllm", "--server", server_url,
                           "--model", MODEL, "--prompt", PROMPTS[0], "--max-new-tokens", "10", "--json"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    run = json.loads(proc.stdout)["runs"][0]
    assert run["ids"] == local.decode(PROMPTS[0], DecodeSettings("greedy", max_new_tokens=10)).runs[0].best.ids
    assert json.loads(proc.stdout)["device"] == "vLLM server"
    proc = subprocess.run([sys.executable, "-m", "core", "decode", "--backend", "vllm", "--server", server_url,
                           "--model", "shakespeare-lstm", "--prompt", "x"], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1
    assert "serves shakespeare-gpt2, not shakespeare-lstm" in proc.stderr


def test_a_server_that_is_down_is_one_sentence():
    port = _free_port()  # nothing listens there
    with pytest.raises(PlaygroundError, match=r"^The vLLM server at http://127.0.0.1:\d+ does not answer"):
        connect(f"http://127.0.0.1:{port}", MODEL)
    proc = subprocess.run([sys.executable, "-m", "core", "compare", "--backend", "vllm", "--server",
                           f"http://127.0.0.1:{port}", "--prompt", "x"], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 2 and proc.stderr.startswith("error: The vLLM server at") and proc.stderr.count("\n") == 1
    proc = subprocess.run([sys.executable, "-m", "core", "decode", "--backend", "vllm", "--prompt", "x"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "needs --server" in proc.stderr


def test_a_silent_server_times_out_in_one_sentence(monkeypatch):
    """A port that accepts connections but never answers: the request's timeout ends it."""
    import core.backends.vllm_client as vllm_client

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    monkeypatch.setattr(vllm_client, "CONNECT_TIMEOUT_S", 0.5)
    try:
        with pytest.raises(PlaygroundError, match="did not answer within"):
            connect(f"http://127.0.0.1:{listener.getsockname()[1]}", MODEL)
    finally:
        listener.close()


@pytest.mark.parametrize("url", ["", "127.0.0.1:8000", "ftp://host", "http://user:pw@host:8000", "http://host?x=1",
                                 "http://host#f", "http://host:99999", "http://ho st", "javascript:alert(1)",
                                 "http://" + "a" * 400])
def test_server_addresses_are_checked(url):
    with pytest.raises(InvalidSetting, match="must look like http://host:port"):
        check_server_url(url)


@hsettings(max_examples=300, deadline=None)
@given(st.text(max_size=80))
def test_any_address_is_accepted_or_refused_in_one_sentence(url):
    try:
        assert check_server_url(url).startswith(("http://", "https://"))
    except InvalidSetting as exc:
        assert str(exc).count(".") >= 1 and "\n" not in str(exc)


def test_the_local_backend_refuses_a_server_address():
    with pytest.raises(InvalidSetting, match="--server is for --backend vllm"):
        open_playground(MODEL, server="http://127.0.0.1:1")


def test_the_app_decodes_on_a_configured_server_and_keeps_it_out_of_the_link(server_url, monkeypatch):
    from streamlit.testing.v1 import AppTest

    import ui

    monkeypatch.setattr(ui, "VLLM_SERVERS", [server_url])
    at = AppTest.from_file(str(ROOT / "pages" / "1_compare.py"), default_timeout=300)
    at.query_params["lineup"] = "greedy\nbeam(num_beams=3)\nbeam(num_beams=3,no_repeat_ngram_size=2)"
    at.query_params["max_new_tokens"] = "8"
    at.run()
    at.sidebar.radio(key="compare__backend").set_value("vllm").run()
    assert not at.exception
    assert at.sidebar.caption[-1].value.startswith("Device: **vLLM server**")
    headers = [h.value for h in at.subheader]
    assert headers == ["greedy", "beam 3"]  # the no-repeat run was skipped, with a warning that says so
    assert any("no_repeat_ngram_size" in w.value.replace("\\", "") for w in at.warning)  # shown escaped, as plain text
    assert any("beam tree" in t.value for e in at.expander for t in e.text)
    for value in at.query_params.values():
        assert "127.0.0.1" not in str(value) and "vllm" not in str(value).lower()


@pytest.mark.parametrize("page, says", [
    ("3_sampling_lab.py", ["The model's real logits at several temperatures: not shown here",
                           "The nucleus size over the run: not known"]),
    ("4_beam_search.py", ["The beam tree (every candidate kept or pruned at every step): not shown here"]),
    ("5_models_and_tokens.py", ["The model's anatomy: not shown here", "Attention over the prompt: not shown here"]),
])
def test_each_page_says_what_the_server_cannot_show(server_url, monkeypatch, page, says):
    from streamlit.testing.v1 import AppTest

    import ui

    monkeypatch.setattr(ui, "VLLM_SERVERS", [server_url])
    at = AppTest.from_file(str(ROOT / "pages" / page), default_timeout=300)
    at.query_params["max_new_tokens"] = "6"
    at.run()
    radio = next(r for r in at.sidebar.radio if r.key.endswith("__backend"))
    radio.set_value("vllm").run()
    assert not at.exception
    infos = [i.value for i in at.info]
    for sentence in says:
        assert any(i.startswith(sentence) for i in infos), (sentence, infos)


ANSWERS = {  # what a broken or hostile "vLLM server" might answer to /v1/completions
    "an id outside the vocabulary": {"choices": [{"index": 0, "logprobs": {
        "tokens": ["token_id:99999"], "top_logprobs": [{"token_id:99999": 0.0}]}}]},
    "choices of the wrong type": {"choices": "many"},
    "log-probs that are not numbers": {"choices": [{"index": 0, "logprobs": {
        "tokens": ["token_id:5"], "top_logprobs": [{"token_id:5": "high"}]}}]},
    "no log-probs": {"choices": [{"index": 0, "text": "x"}]},
    "not JSON": b"<html>hello</html>",
}


@pytest.fixture()
def fake_server():
    """A stand-in for a vLLM server on 127.0.0.1 that answers /v1/models like vLLM and /v1/completions
    with whatever the test puts in `answer`, and keeps every request body it was sent in `sent`."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    state = {"answer": {}, "models": {"data": [{"id": MODEL, "max_model_len": 256}]}, "sent": []}

    class Handler(BaseHTTPRequestHandler):
        def _send(self, body):
            raw = body if isinstance(body, bytes) else json.dumps(body).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

        def do_GET(self):
            self._send(state["models"] if self.path == "/v1/models" else {"version": "fake"})

        def do_POST(self):
            state["sent"].append(json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0)))))
            self._send(state["answer"])

        def log_message(self, *args):
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", state
    httpd.shutdown()


@pytest.mark.parametrize("case", sorted(ANSWERS))
def test_a_malformed_answer_is_one_sentence(fake_server, case):
    url, state = fake_server
    state["answer"] = ANSWERS[case]
    pg = connect(url, MODEL)
    for call in (lambda: pg.decode("ROMEO.", DecodeSettings("greedy", max_new_tokens=3)),
                 lambda: pg.decode("ROMEO.", DecodeSettings("beam", num_beams=2, max_new_tokens=3)),
                 lambda: pg.score("ROMEO. But soft")):
        with pytest.raises(PlaygroundError) as caught:
            call()
        assert "\n" not in str(caught.value) and str(caught.value).startswith(("The vLLM server", "The server at"))


def test_a_servers_model_names_are_cut_and_plain(fake_server):
    url, state = fake_server
    state["models"] = {"data": [{"id": "**bold** ![x](http://e/x.png) " * 20, "max_model_len": 10**30}] * 9}
    with pytest.raises(PlaygroundError) as caught:
        connect(url, MODEL)
    message = str(caught.value)
    assert "and 4 more" in message and len(message) < 800


_ASKS = {"logprobs": 10, "max_tokens": 3, "model": MODEL, "return_tokens_as_token_ids": True,
         "skip_special_tokens": False,
         # generate()'s controls vLLM has, sent also when off so that the server's defaults never stand in
         "min_tokens": 0, "bad_words": [], "logit_bias": {}, "stop": [], "include_stop_str_in_output": True}
_NO_PENALTY = "vLLM's beam search takes no repetition penalty and stops as early_stopping=false does"
_NO_CUTOFFS = "vLLM's API has no typical-p, epsilon or eta sampling"
SENT_FOR = [  # a run, and the request the backend sends for it or the reason it names when it sends none
    (DecodeSettings("greedy"), {**_ASKS, "n": 1, "repetition_penalty": 1.0, "temperature": 0.0}),
    (DecodeSettings("greedy", repetition_penalty=1.3, typical_p=0.5, early_stopping=True),  # greedy reads neither
     {**_ASKS, "n": 1, "repetition_penalty": 1.3, "temperature": 0.0}),
    (DecodeSettings("beam", num_beams=1), {**_ASKS, "n": 1, "repetition_penalty": 1.0, "temperature": 0.0}),
    (DecodeSettings("sample", seed=7), {**_ASKS, "n": 1, "repetition_penalty": 1.0, "seed": 7, "temperature": 1.0,
                                        "top_k": 50, "top_p": 1.0, "min_p": 0.0}),
    (DecodeSettings("sample", temperature=0.7, top_k=0, top_p=0.9, min_p=0.05, num_return_sequences=2,
                    repetition_penalty=1.2, seed=3),
     {**_ASKS, "n": 2, "repetition_penalty": 1.2, "seed": 3, "temperature": 0.7, "top_k": -1, "top_p": 0.9,
      "min_p": 0.05}),
    (DecodeSettings("beam", num_beams=3, length_penalty=0.5, num_return_sequences=2),
     {"model": MODEL, "max_tokens": 3, "n": 3, "use_beam_search": True, "length_penalty": 0.5, "temperature": 0.0,
      "return_token_ids": True, "skip_special_tokens": False}),
    (DecodeSettings("beam", num_beams=4, repetition_penalty=1.2), _NO_PENALTY),
    (DecodeSettings("beam", num_beams=4, early_stopping=True), _NO_PENALTY),
    (DecodeSettings("beam", num_beams=4, early_stopping="never", no_repeat_ngram_size=2),
     "vLLM's API has no no_repeat_ngram_size"),
    (DecodeSettings("greedy", no_repeat_ngram_size=2), "vLLM's API has no no_repeat_ngram_size"),
    (DecodeSettings("sample", typical_p=0.9), _NO_CUTOFFS),
    (DecodeSettings("sample", epsilon_cutoff=3e-4, no_repeat_ngram_size=3), "vLLM's API has no no_repeat_ngram_size"),
    (DecodeSettings("sample", eta_cutoff=3e-4), _NO_CUTOFFS),
    (DecodeSettings("contrastive", penalty_alpha=0.6, top_k=4), "vLLM has no contrastive search"),
    (DecodeSettings("beam", num_beams=4, num_beam_groups=2, diversity_penalty=0.5), "vLLM has no group beam search"),
    # a second model (an amateur) cannot join a server's run: refused by name, and nothing loaded here for it
    (DecodeSettings("contrastive_decoding", amateur_model="shakespeare-lstm"), "vLLM has no contrastive decoding"),
    (DecodeSettings("contrastive_decoding", amateur_model="shakespeare-lstm", num_beams=3),
     "vLLM has no contrastive decoding beam search"),
]


@pytest.mark.parametrize("run, sent", SENT_FOR, ids=[s.name() for s, _ in SENT_FOR])
def test_what_each_run_sends_or_why_it_sends_nothing(fake_server, run, sent):
    """The translation, request by request: what is declared runnable on vLLM goes as these fields; the
    rest is refused with its reason, and nothing is sent for it."""
    url, state = fake_server
    pg = connect(url, MODEL)
    run = run.replace(max_new_tokens=3)
    if isinstance(sent, str):
        with pytest.raises(InvalidSetting) as caught:
            pg.compare("ROMEO.", [run])
        assert str(caught.value) == ("The vLLM backend can run none of these runs: Skipped on the vLLM backend: "
                                     f"{run.name()} ({sent}).")
        assert state["sent"] == []
        return
    with pytest.raises(PlaygroundError):  # the fake server answers nothing useful; what it was sent is the point
        pg.compare("ROMEO.", [run])
    body = state["sent"][0]
    assert body.pop("prompt") == pg.encode_prompt("ROMEO.", 3)[0] and body == sent


CONTROLS_REFUSED = [  # generate()'s controls vLLM's API lacks, each refused by name with nothing sent
    (DecodeSettings("sample", top_h=0.5), "vLLM's API has no top-h sampling"),
    (DecodeSettings("greedy", guidance_scale=1.5), "vLLM's API has no classifier-free guidance"),
    (DecodeSettings("greedy", exponential_decay_length_penalty=(2, 1.2)),
     "vLLM's API has no exponential decay length penalty"),
    (DecodeSettings("greedy", suppress_tokens=(" lord",)),
     "vLLM's API has no suppress_tokens (a bias of -100 by logit_bias is not a ban)"),
    (DecodeSettings("beam", num_beams=2, stop_strings=(".",)), "vLLM's beam search takes no stop strings"),
    (DecodeSettings("beam", num_beams=2, min_new_tokens=2), "vLLM's beam search takes no min_tokens"),
    (DecodeSettings("greedy", sequence_bias=((" my lord", 2.0),)),
     "vLLM's logit_bias takes one token per entry, and the sequence_bias text ' my lord' is 2 tokens"),
]


@pytest.mark.parametrize("run, why", CONTROLS_REFUSED, ids=[s.name() for s, _ in CONTROLS_REFUSED])
def test_controls_vllm_lacks_are_refused_by_name(fake_server, run, why):
    url, state = fake_server
    pg = connect(url, MODEL)
    run = run.replace(max_new_tokens=3)
    with pytest.raises(InvalidSetting) as caught:
        pg.compare("ROMEO.", [run])
    assert str(caught.value) == f"The vLLM backend can run none of these runs: Skipped on the vLLM backend: {run.name()} ({why})."
    assert state["sent"] == []


def test_the_controls_vllm_has_go_to_the_server(fake_server):
    """stop, min_tokens, bad_words (as text) and logit_bias (by the id of each one-token text); the finish
    names the stop string vLLM says it met."""
    url, state = fake_server
    pg = connect(url, MODEL)
    lord = pg.encode_text(" lord")
    assert len(lord) == 1
    state["answer"] = {"choices": [{"index": 0, "finish_reason": "stop", "stop_reason": "\n\n", "logprobs": {
        "tokens": ["token_id:5"], "top_logprobs": [{"token_id:5": -0.1}]}}]}
    run = DecodeSettings("greedy", max_new_tokens=3, stop_strings=(".", "\n\n"), min_new_tokens=2,
                         bad_words=(" thee", " thou art"), sequence_bias=((" lord", -4.0),))
    result = pg.compare("ROMEO.", [run])
    body = state["sent"][0]
    body.pop("prompt")
    assert body == {**_ASKS, "n": 1, "repetition_penalty": 1.0, "temperature": 0.0, "min_tokens": 2,
                    "bad_words": [" thee", " thou art"], "logit_bias": {str(lord[0]): -4.0}, "stop": [".", "\n\n"]}
    best = result.runs[0].best
    assert (best.finish_reason, best.finish_detail) == ("stop_string", "\n\n")


def test_a_new_strategy_runs_locally_and_is_refused_by_name_on_vllm(tmp_path, fake_server):
    """Drop a strategy file into a copy of core/ (test_strategies' kth): it decodes in this process, and
    the vLLM backend, which it declares nothing for, names it and sends nothing for it (before, it went
    to the server as greedy)."""
    import shutil

    from test_strategies import KTH_CHOICE

    shutil.copytree(ROOT / "core", tmp_path / "core", ignore=shutil.ignore_patterns("__pycache__"))
    (tmp_path / "assets").symlink_to(ROOT / "assets")
    (tmp_path / "core/decoding/strategies/kth_choice.py").write_text(KTH_CHOICE, encoding="utf-8")
    url, state = fake_server
    state["answer"] = {"choices": [{"index": 0, "logprobs": {"tokens": ["token_id:5"],
                                                             "top_logprobs": [{"token_id:5": -0.1}]}}]}

    def cli(*argv):
        return subprocess.run([sys.executable, "-m", "core", *argv, "--model", MODEL, "--prompt", PROMPTS[0],
                               "--max-new-tokens", "3"], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                              env={"PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1"})

    here = cli("decode", "--strategy", "kth", "--rank", "2", "--json")
    assert here.returncode == 0, here.stderr
    assert [st["rank"] for st in json.loads(here.stdout)["runs"][0]["steps"]] == [2, 2, 2]
    refused = "Skipped on the vLLM backend: choice 2 (vLLM has no kth choice search)."
    alone = cli("decode", "--strategy", "kth", "--rank", "2", "--backend", "vllm", "--server", url)
    assert alone.returncode == 2 and alone.stderr == f"error: The vLLM backend can run none of these runs: {refused}\n"
    assert state["sent"] == []
    beside = cli("compare", "--lineup", "greedy; kth(rank=2)", "--backend", "vllm", "--server", url, "--json")
    assert beside.returncode == 0, beside.stderr
    assert f"note: {refused}" in beside.stderr.splitlines()
    assert [r["name"] for r in json.loads(beside.stdout)["runs"]] == ["greedy"]
    assert len(state["sent"]) == 1 and state["sent"][0]["temperature"] == 0.0  # the greedy run's request only
