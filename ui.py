"""What every page shares: the sidebar with the page links, the cached model, URL state, decoding.

Not a page (pages/ holds only pages): each page calls `sidebar(...)` first, so it runs with its real
sidebar whether it is reached through the entry file or run on its own (as AppTest's switch_page does).
"""

from __future__ import annotations

import os
import urllib.parse

import streamlit as st
from streamlit.errors import StreamlitPageNotFoundError

from core import limits, serving
from core.decoding.settings import DecodeSettings
from core.errors import PlaygroundError
from core.models import registry
from core.models.lm import ENGINES
from core.playground import DecodeResult, Playground
from core.decoding import lineup as lineup_syntax
from core.views import share
from core.views.share import Param

UNICORN = ("In a shocking finding, scientist discovered a herd of unicorns living in a remote, previously "
           "unexplored valley, in the Andes Mountains. Even more surprising to the researchers was the fact "
           "that the unicorns spoke perfect English.")
PRESETS = {  # seed 004's prompts, and two in the voice of the shipped Shakespeare models
    "A long long time ago": "A long long time ago, ",
    "Unicorns (GPT-2's blog post)": UNICORN,
    "Arithmetic": "Q: What is 12 + 7?\nA: 12 + 7 =",
    "Romeo": "Romeo.\n",
    "Hamlet": "To be, or not to be",
}
# (file, title, icon, url path); the url paths are the ones Streamlit derives from the file names
PAGES = [
    ("pages/1_compare.py", "Compare", ":material/compare_arrows:", "compare"),
    ("pages/2_step_through.py", "Step through", ":material/footprint:", "step_through"),
    ("pages/3_sampling_lab.py", "Sampling lab", ":material/casino:", "sampling_lab"),
    ("pages/4_beam_search.py", "Beam search", ":material/account_tree:", "beam_search"),
    ("pages/5_models_and_tokens.py", "Models & tokens", ":material/biotech:", "models_and_tokens"),
    ("pages/6_score_a_text.py", "Score a text", ":material/straighten:", "score_a_text"),
    ("pages/7_report.py", "Report", ":material/analytics:", "report"),
    ("pages/8_pipeline.py", "Pipeline", ":material/filter_alt:", "pipeline"),
    ("pages/9_speculative_decoding.py", "Speculative decoding", ":material/fast_forward:", "speculative_decoding"),
    ("pages/10_watermark_lab.py", "Watermark lab", ":material/water_drop:", "watermark_lab"),
]
SIDEBAR = {"model": "", "seed": Param.from_knob("seed"),
           "max_new_tokens": Param.from_knob("max_new_tokens", high=limits.MAX_APP_NEW_TOKENS, widget="slider",
                                             limit="the most the app decodes per run")}
SCHEMAS: dict[str, dict] = {}  # each page's URL parameters, sidebar included, as `sidebar` last drew it
SHARED = "_shared_sidebar"  # sidebar values carried from page to page within a session
BACKEND = "_backend"  # the session's backend choice: never in the URL, so no link carries a server's address
# vLLM servers this app may decode on, as the operator configured them: a visitor picks one of these and
# can never make the app send requests to an address of their own
VLLM_SERVERS = [u.strip() for u in os.environ.get("PLAYGROUND_VLLM_SERVERS", "").split(",") if u.strip()]


@st.cache_resource(show_spinner="Loading the model…", max_entries=3)
def load_playground(name: str) -> Playground:
    # one per model per process (core.models.loaded: the same object an amateur or a comparison gets), shared
    # by every session; nothing ever mutates it. Cached here too for the spinner, shown only while it loads.
    return Playground.load(name)


@st.cache_resource(show_spinner="Connecting to the vLLM server…", ttl=300, max_entries=8)
def connect_vllm(url: str, model: str, full_vocabulary: bool):
    from core.backends.vllm import connect

    return connect(url, model, full_vocabulary=full_vocabulary)


@st.cache_resource
def server() -> tuple[serving.SharedResults, serving.DecodeSlots]:
    """The process's shared results and decoding slots; torch's threads shared out between the slots."""
    import torch

    slots, threads = serving.plan_threads()
    torch.set_num_threads(threads)
    return serving.SharedResults(serving.cache_bytes()), serving.DecodeSlots(slots, **serving.queue_bounds())


@st.cache_resource
def remote_slots() -> serving.DecodeSlots:
    """Requests to vLLM servers: the server batches them, so many go at once, but each visitor's waiting
    ones are bounded as locally. A server request cannot be paused, so nothing yields mid-run."""
    return serving.DecodeSlots(serving.REMOTE_SLOTS, quantum=float("inf"), **serving.queue_bounds())


def visitor() -> str:
    """Who this session counts as: its client address, so that many tabs from one address are one visitor."""
    hops = serving.trusted_proxy_hops()
    forwarded = st.context.headers.get("X-Forwarded-For") if hops else None
    return serving.visitor_address(st.context.ip_address, forwarded, hops)


def _session_alive():
    """Whether this browser session is still connected (a closed tab's work is dropped at its next step)."""
    from streamlit import runtime
    from streamlit.runtime.scriptrunner import get_script_run_ctx

    ctx = get_script_run_ctx()
    if ctx is None or not runtime.exists():
        return lambda: True
    instance = runtime.get_instance()
    return lambda: instance.is_active_session(ctx.session_id)


def in_turn(pg, work, progress):
    """Run `work` when it is this visitor's turn (see serving.DecodeSlots); the page's `progress`
    placeholder shows the place in the queue. Call `step_boundary` from work's per-step callback."""
    slots = remote_slots() if is_remote(pg) else server()[1]
    return slots.run(work, _waiting_note(progress), visitor=visitor(), alive=_session_alive())


def step_boundary(pg, progress) -> None:
    """Where a running decode gives the cores to a waiting visitor whose turn it is, or stops if its tab is gone."""
    (remote_slots() if is_remote(pg) else server()[1]).checkpoint(_waiting_note(progress))


def _waiting_note(progress):
    def on_wait(ahead: int) -> None:
        progress.info(f"The server is decoding for other visitors: {ahead} request(s) ahead of yours.",
                      icon=":material/hourglass_top:")
    return on_wait


def warn(message: str) -> None:
    """A warning that may quote a stranger's value: shown as plain text, never rendered as markdown."""
    st.warning(share.plain(message), icon=":material/warning:")


def fail(message: str) -> None:
    st.error(share.plain(message), icon=":material/error:")


def init_state(page: str, schema: dict) -> None:
    """The page's values: from the link, else the last page's sidebar, else defaults, once per session and page;
    again when a link from another page of this session (`link_to`) brings an address the page has not read or
    written itself; and from the page's own last address when Streamlit dropped its widgets' values (it drops
    a widget's value after a run that did not draw it: another page's run, or a run that left the widget out)."""
    flag, published = f"{page}__initialised", f"{page}__published"
    arrived = st.query_params.to_dict()
    if flag not in st.session_state or (arrived and arrived != st.session_state.get(published)):
        source = arrived
        st.session_state[published] = arrived  # read once: a run that stops before `publish` does not read it again
    elif any(f"{page}_{name}" not in st.session_state for name in schema):
        source = st.session_state.get(published, {})
    else:
        return
    values, problems = share.read_params(source, schema)
    if "model" in source and values["model"] not in registry.available_models():
        problems.append(f"The link's model={share.quote(values['model'])} is not offered here; using "
                        f"{registry.default_model()}.")
        values["model"] = registry.default_model()
    carried = st.session_state.get(SHARED, {})
    for name, value in values.items():
        if name in SIDEBAR and name in carried and name not in arrived:
            value = carried[name]
        st.session_state[f"{page}_{name}"] = value
    if source is arrived:
        st.session_state[f"{page}__problems"] = problems
    st.session_state[flag] = True


def state(page: str, name: str):
    return st.session_state[f"{page}_{name}"]


def bounded(page: str, name: str, low, high) -> None:
    """Bring a value into a widget's range when the range depends on the model (layers, steps)."""
    key = f"{page}_{name}"
    value = st.session_state[key]
    if not low <= value <= high:
        st.session_state[key] = min(max(value, low), high)
        warn(f"{name}={value} is outside {low} to {high} here; using {st.session_state[key]}.")


def setting(page: str, name: str, label: str, *, facts=None, where=None, **widget) -> object:
    """The widget of a setting's parameter in the page's schema (`Param.from_knob`): its bounds, step, help
    and choices from the knob, with the model's `facts` for a bound that names one. A value outside the
    page's comfort slider (from a link) is kept and shown in a box over the whole range, with one sentence."""
    where = st if where is None else where
    key = f"{page}_{name}"
    p = SCHEMAS[page][name].resolved(facts)
    helps = share.plain(p.help) if p.help else None
    if p.widget == "choice":
        return where.selectbox(label, p.choices, key=key, help=helps, format_func=share.write_value, **widget)
    if p.widget == "text":  # a setting that is text: its JSON in a box, read back as a link's value is
        box = f"{key}__json"
        if box not in st.session_state:
            st.session_state[box] = share.write_value(st.session_state[key], name)
        typed = where.text_input(label, key=box, help=helps, **widget)
        value, problem = share.read_params({name: typed}, {name: p})
        if problem:
            warn(problem[0])
        else:
            st.session_state[key] = value[name]
        return st.session_state[key]
    value = st.session_state[key]
    if not p.allows(value):  # a bound the model sets (the vocabulary), or a model changed since
        st.session_state[key] = p.brought_in(value)
        warn(f"{name}={value} is outside {p.span()} here; using {st.session_state[key]}.")
    shown = p.shown_as(st.session_state[key])
    if st.session_state.get(f"{key}__shown", shown.kind) != shown.kind:
        st.session_state[key] = st.session_state[key]  # the value carries over to the other kind of widget
    st.session_state[f"{key}__shown"] = shown.kind
    if shown.kind == "slider":
        return where.slider(label, shown.low, shown.high, step=shown.step, key=key, help=helps, **widget)
    whole = isinstance(p.default, int)
    value = where.number_input(label, shown.low, shown.high, step=shown.step, key=key, help=helps,
                               format=None if whole else "%g", **widget)
    if shown.note:
        where.caption(share.plain(shown.note))
    return value


def publish(page: str, schema: dict) -> None:
    """Write the page's whole state into the URL, so the address bar is a link that reproduces it."""
    current = {name: state(page, name) for name in share.defaults(schema)}
    st.query_params.from_dict(share.write_params(current))
    # as the next run will read the address back: a widget changed since is not mistaken for a new link
    st.session_state[f"{page}__published"] = st.query_params.to_dict()
    st.session_state[SHARED] = {k: current[k] for k in SIDEBAR}


def sidebar(page: str, schema: dict, title: str) -> Playground:
    """Draw the shared sidebar and return the loaded model; stop the page with one sentence if it fails."""
    statuses = registry.model_statuses()
    names = list(statuses)
    schema = {**SIDEBAR, "model": registry.default_model(), **schema}
    SCHEMAS[page] = schema
    init_state(page, schema)
    st.set_page_config(page_title=f"{title} · Decoding Playground", layout="wide")
    st.title(title)
    for problem in st.session_state.get(f"{page}__problems", []):
        warn(problem)
    key = f"{page}_model"
    if st.session_state[key] not in names:
        st.session_state[key] = registry.default_model()
    with st.sidebar:
        st.markdown("### Decoding Playground")
        try:
            for path, label, icon, _ in PAGES:
                st.page_link(path, label=label, icon=icon)
        except StreamlitPageNotFoundError:
            pass  # a page run on its own (AppTest) has no other pages to link to
        st.divider()
        st.selectbox("Model", names, key=key, format_func=lambda n: n if statuses[n].startswith("ready")
                     else f"{n} (not downloaded)")
        setting(page, "seed", "Seed")
        setting(page, "max_new_tokens", "Max new tokens")
        if "prompt" in schema:
            st.selectbox("Prompt presets", ["(choose)", *PRESETS], key=f"{page}__preset",
                         on_change=_apply_preset, args=(page,))
    choice = _backend_widgets(page)
    try:
        if choice["backend"] == "vllm":
            pg = connect_vllm(choice["server"], st.session_state[key], choice["full_vocabulary"])
        else:
            pg = load_playground(st.session_state[key])
    except PlaygroundError as exc:
        fail(str(exc))
        st.stop()
    st.sidebar.caption(f"Device: **{pg.device}** ({pg.dtype}) · context {pg.facts.context_length} tokens · "
                       f"vocabulary {pg.facts.vocab_size:,} · forward: **{pg.engine}**",
                       help=ENGINES.get(pg.engine))
    if is_remote(pg):
        with st.expander("What the vLLM backend cannot show", icon=":material/cloud:"):
            st.text("\n".join(f"- {line}" for line in pg.cannot_show()))
    publish(page, schema)
    return pg


def link_to(url_path: str, label: str, params: dict[str, str], *, icon: str | None = None, where=None) -> None:
    """A link to another page of the app, opening it with `params` as its URL parameters (its whole state).
    Where the page runs on its own (AppTest), with no other pages registered, a plain link to the same address."""
    where = st if where is None else where
    path = next(p for p, _, _, url in PAGES if url == url_path)
    try:
        where.page_link(path, label=label, icon=icon, query_params=params)
    except StreamlitPageNotFoundError:
        where.markdown(f"[{share.plain(label)}](/{url_path}?{urllib.parse.urlencode(params)})")


def _backend_widgets(page: str) -> dict:
    """Local or a configured vLLM server; kept for the session, never put in a link."""
    chosen = st.session_state.setdefault(BACKEND, {"backend": "local", "server": (VLLM_SERVERS or [""])[0],
                                                   "full_vocabulary": False})
    if chosen["server"] not in VLLM_SERVERS:
        chosen.update(backend="local", server=(VLLM_SERVERS or [""])[0])
    with st.sidebar.expander("Backend", icon=":material/dns:"):
        labels = {"local": "this process (the whole trace)", "vllm": "a vLLM server"}
        backend = st.radio("Decode on", list(labels), format_func=labels.get, key=f"{page}__backend",
                           index=list(labels).index(chosen["backend"]), disabled=not VLLM_SERVERS)
        if not VLLM_SERVERS:
            st.caption("No vLLM server is configured (PLAYGROUND_VLLM_SERVERS).")
            backend = "local"
        server = chosen["server"]
        full = chosen["full_vocabulary"]
        if backend == "vllm":
            server = st.selectbox("Server", VLLM_SERVERS, index=VLLM_SERVERS.index(server), key=f"{page}__server")
            full = st.checkbox("Whole vocabulary at every step", value=full, key=f"{page}__full_vocabulary",
                               help="entropy, the cumulative curve and processed probabilities; slower answers")
        chosen.update(backend=backend, server=server, full_vocabulary=full)
    return dict(chosen)


def is_remote(pg) -> bool:
    return pg.remote


def local_only(pg, what: str) -> bool:
    """False, after saying so, when `what` needs the model in this process and it runs on a server."""
    if is_remote(pg):
        st.info(f"{what}: not shown here, because it needs the model's weights in this process and the vLLM "
                "backend gives only what its server returns. Switch the sidebar's Backend to this process to see "
                "it.", icon=":material/cloud_off:")
        return False
    return True


def cuts_known(pg) -> bool:
    """Whether the runs' traces say what each cut kept: always locally; on vLLM only with the whole vocabulary."""
    return not is_remote(pg) or pg.full_vocabulary


def _apply_preset(page: str) -> None:
    choice = st.session_state[f"{page}__preset"]
    if choice in PRESETS:
        st.session_state[f"{page}_prompt"] = PRESETS[choice]


def remember(key: tuple, compute):
    """Model work shared by every session of the process, keyed by what determines it (callers put
    the model's name in the key; decode() its whole fingerprint): a link's second visitor, and a rerun
    that only changes how results are shown, reuse the result instead of running the model again.
    What comes back is shared between sessions: never change it."""
    results, _ = server()
    return results.get_or_compute(key, compute)


def decode(pg: Playground, prompt: str, runs: list[DecodeSettings], **kwargs) -> DecodeResult | None:
    """Decode once per distinct input in the whole process, in a decoding slot, streaming the texts.

    Returns None after showing the one-sentence reason when the input is bad."""
    key = ("decode", prompt, lineup_syntax.lineup_spec(runs), tuple(s.seed for s in runs),
           tuple(s.max_new_tokens for s in runs), repr(sorted(kwargs.items())))
    progress = st.empty()

    def on_step(step: int, ids: list[list[int]]) -> None:
        step_boundary(pg, progress)
        if step % 4 == 0:  # each update is also where a rerun can interrupt a long run
            total = max(s.max_new_tokens for s in runs)
            progress.progress(min(1.0, (step + 1) / total),
                              text=share.plain(f"step {step + 1}: " + " | ".join(pg.text(i)[-40:] for i in ids[:4])))

    try:
        return remember((pg.fingerprint(), pg.models_fingerprint(runs), *key),
                        lambda: in_turn(pg, lambda: pg.compare(prompt, runs, on_step=on_step, **kwargs), progress))
    except PlaygroundError as exc:
        fail(str(exc))
        return None
    except serving.Cancelled:
        st.stop()  # the visitor is gone: nothing to show to anyone
    finally:
        progress.empty()


def other_models(pg: Playground, names: list[str]) -> tuple[list[Playground], list[str]]:
    """The models compared with the page's `pg`, where the session's backend puts them: locally, each loaded
    once per process; on vLLM, each on the first configured server that serves it, else in this process
    beside it (with a notice). [] and one sentence shown when one cannot be had."""
    from core.backends import open_models

    choice = st.session_state.get(BACKEND, {})
    try:
        if is_remote(pg):
            return open_models(names, backend="vllm", servers=VLLM_SERVERS, connect=lambda url, name: connect_vllm(
                url, name, bool(choice.get("full_vocabulary"))))
        return [load_playground(name) for name in names], []
    except PlaygroundError as exc:
        fail(str(exc))
        return [], []


def decode_models(models: list[Playground], prompt: str, runs: list[DecodeSettings]):
    """Model against model (`core.model_comparison`), shared and queued as `decode` is; None after showing why
    it could not run."""
    from core import model_comparison

    key = ("models", tuple(pg.fingerprint() for pg in models), tuple(pg.models_fingerprint(runs) for pg in models),
           prompt, lineup_syntax.lineup_spec(runs), tuple(s.seed for s in runs), tuple(s.max_new_tokens for s in runs))
    progress = st.empty()
    first = next((m for m in models if not m.remote), models[0])  # local work waits for a local slot

    def on_step(model: int, step: int, ids: list[list[int]]) -> None:
        step_boundary(first, progress)
        if step % 4 == 0:
            total = max(s.max_new_tokens for s in runs)
            done = (model + min(1.0, (step + 1) / total)) / len(models)
            progress.progress(min(1.0, done), text=share.plain(f"{models[model].label}, step {step + 1}: "
                                                               + " | ".join(models[model].text(i)[-30:] for i in ids[:3])))

    try:
        return remember(key, lambda: in_turn(first, lambda: model_comparison.compare_models(
            models, prompt, runs, on_step=on_step), progress))
    except PlaygroundError as exc:
        fail(str(exc))
        return None
    except serving.Cancelled:
        st.stop()
    finally:
        progress.empty()


def decode_report(pg: Playground, prompts: list, runs: list[DecodeSettings], heldout: list):
    """The Report's decode, shared and queued as `decode` is; None after showing why it could not run."""
    from core import report

    key = (pg.fingerprint(), pg.models_fingerprint(runs), "report", tuple(prompts), lineup_syntax.lineup_spec(runs),
           tuple(s.seed for s in runs), tuple(s.max_new_tokens for s in runs), tuple(s.rows for s in runs))
    return _report_work(pg, key, lambda on_step: report.make_report(pg, prompts, runs, human=heldout,
                                                                     on_step=on_step))


def decode_sweep(pg: Playground, prompts: list, base: list[DecodeSettings], sweeps: list, heldout: list):
    """The Report's sweeps, shared and queued as `decode` is; None after showing why they could not run."""
    from core import report

    key = (pg.fingerprint(), "sweep", tuple(prompts), lineup_syntax.lineup_spec(base),
           tuple(s.seed for s in base), tuple(s.max_new_tokens for s in base), tuple(s.rows for s in base),
           tuple(sweeps))
    return _report_work(pg, key, lambda on_step: report.make_sweep(pg, prompts, base, sweeps, human=heldout,
                                                                    on_step=on_step))


def _report_work(pg: Playground, key: tuple, make):
    """`make(on_step)` computed once per key in the process, in this visitor's turn, with its progress."""
    progress = st.empty()

    def on_step(done: int, total: int, texts: list[str]) -> None:
        step_boundary(pg, progress)
        if done % 4 == 0:  # each update is also where a rerun can interrupt a long run
            progress.progress(min(1.0, done / total), text=share.plain(f"step {done} of {total}: {texts[-1][-60:]}"))

    try:
        return remember(key, lambda: in_turn(pg, lambda: make(on_step), progress))
    except PlaygroundError as exc:
        fail(str(exc))
        return None
    except serving.Cancelled:
        st.stop()  # the visitor is gone
    finally:
        progress.empty()


def distribution_toggle(page: str) -> str:
    return st.radio("Probabilities shown", ["raw", "processed"], horizontal=True, key=f"{page}_distribution",
                    help="raw: the model's softmax; processed: what the strategy chose from, after its processors")
