"""What the pages and the command line call: a loaded model with its tokenizer, and the runs on it.

A `Playground` is made once per process (the app caches it) and never mutated afterwards: every call
takes its settings as arguments and returns fresh results.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from typing import ClassVar

import torch

from core import limits
from core.decoding import engine
from core.decoding.knobs import TokenTexts
from core.decoding.scoring import ScoredToken, ScoreResult, score_ids
from core.decoding.strategies.base import RawRun, RawSequence
from core.decoding.settings import DEFAULT_MAX_NEW_TOKENS, DecodeSettings, lineup_seeds, validate
from core.decoding.trace import DISTRIBUTIONS, BeamNode, Candidate, DraftCheck, RunTrace, Sequence, Speculation, Step
from core.errors import InvalidSetting, PlaygroundError
from core.models import loaded as loaded_models
from core.models import registry
from core.models.lm import ModelFacts, StepModel, can_rewind, forward_choice


def default_lineup(max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS, seed: int = 0) -> list[DecodeSettings]:
    """The Compare page's line-up, run i seeded seed + i. The temperature and top-p runs set top_k=0
    (pure temperature or nucleus sampling, as in the course's lesson); generate() would otherwise add
    its default top_k=50."""
    base = DecodeSettings(max_new_tokens=max_new_tokens, seed=seed)
    return lineup_seeds([
        base.replace(strategy="greedy"),
        base.replace(strategy="beam", num_beams=5),
        base.replace(strategy="beam", num_beams=5, no_repeat_ngram_size=2),
        base.replace(strategy="sample", temperature=0.5, top_k=0),
        base.replace(strategy="sample", temperature=1.0, top_k=0),
        base.replace(strategy="sample", temperature=2.0, top_k=0),
        base.replace(strategy="sample", top_k=50),
        base.replace(strategy="sample", top_p=0.9, top_k=0),
    ], seed)


@dataclass
class DecodeResult:
    model: str  # as exports name it (`registry.public_name`): never a folder's path
    device: str
    prompt_ids: list[int]
    prompt_text: str  # the prompt as decoded, after any cut
    runs: list[RunTrace]
    notices: list[str] = field(default_factory=list)
    seconds: float = 0.0
    dtype: str = "float32"  # of the weights the runs were decoded with
    engine: str = ""  # the forward pass that decoded them: lean, transformers, native (our models), vllm
    # what the model was loaded by (a name or a folder's path): only the recipe reads it, to find the model's
    # files; to_dict leaves it out, so no export carries a path
    loaded_from: str = field(default="", repr=False)

    def to_dict(self) -> dict:
        return {"model": self.model, "device": self.device, "dtype": self.dtype, "engine": self.engine,
                "prompt_ids": self.prompt_ids,
                "prompt_text": self.prompt_text, "notices": self.notices, "seconds": self.seconds,
                "distributions": DISTRIBUTIONS, "runs": [r.to_dict() for r in self.runs]}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False)


class Playground:
    """A model and its tokenizer, decoding in this process. A backend that decodes elsewhere subclasses
    it, names itself in `backend`, and passes the model's `facts` without an `lm`."""

    backend: ClassVar[str] = "local"  # where the runs decode (`core.backends.BACKENDS`)

    def __init__(self, name: str, lm: StepModel | None, tokenizer, model=None, *, facts: ModelFacts | None = None):
        self.name = name
        self.label = registry.public_name(name)  # what results and exports call the model
        self.lm = lm
        self.tokenizer = tokenizer
        self.model = model  # the underlying torch module, for anatomy and attention views
        self.facts = lm.facts if lm is not None else facts
        self.parameters = sum(p.numel() for p in model.parameters()) if model is not None else 0
        self.allow_paths = False  # whether another model this one is asked to use may be a folder (`other`)
        self.forward: str | None = None  # the forward asked for (`load`), which the models it uses (`other`) follow
        self._fingerprint: tuple | None = None
        self._token_text = lru_cache(maxsize=None)(self._decode_one)

    @classmethod
    def load(cls, name: str, *, device: str | None = None, allow_paths: bool = False,
             forward: str | None = None) -> "Playground":
        """The model `name`, loaded once per process (`core.models.loaded`) and shared: every Playground of
        it holds the same weights, which nothing changes. `forward`: which forward pass decodes
        (`core.models.lm.FORWARDS`; None: $PLAYGROUND_FORWARD or auto)."""
        forward = forward_choice(forward)  # a bad choice is refused before the model is loaded
        loaded = loaded_models.load(name, device=device, allow_paths=allow_paths)
        return _playground(cls, name, loaded, allow_paths, forward)

    def other(self, name: str) -> "Playground":
        """Another model on this one's device, loaded once per process, as a Playground: an amateur, a
        draft, or another model of a comparison. A folder only where this one could be one (the command
        line), never from a link."""
        return Playground.load(name, device=self.device, allow_paths=self.allow_paths, forward=self.forward)

    @cached_property
    def tokenizer_digest(self) -> str:
        """Equal for two models exactly when their tokenizers give the same ids (`loaded.tokenizer_digest`)."""
        return loaded_models.tokenizer_digest(self.tokenizer)

    def shares_tokenizer(self, other: "Playground") -> bool:
        return self.tokenizer_digest == other.tokenizer_digest

    @property
    def remote(self) -> bool:
        """Whether the runs decode outside this process, so the model's weights are not here."""
        return self.backend != "local"

    @property
    def device(self) -> str:
        return str(self.lm.device)

    @property
    def engine(self) -> str:
        """The forward pass that decodes: the adapter's (lean, transformers, native), else the backend's name."""
        return getattr(self.lm, "engine", self.backend) if self.lm is not None else self.backend

    @property
    def device_type(self) -> str:
        """What the request budget is sized for (`limits.budget`)."""
        return self.lm.device.type

    @property
    def dtype(self) -> str:
        return str(next(self.model.parameters()).dtype).replace("torch.", "") if self.model is not None else "?"

    def fingerprint(self) -> tuple:
        """What, besides the inputs, decides every result: the weights, device, dtype and libraries."""
        if self._fingerprint is None:
            import transformers

            self._fingerprint = (self.name, registry.model_revision(self.name), self.device, self.dtype, self.engine,
                                 torch.__version__, transformers.__version__)
        return self._fingerprint

    def _decode_one(self, token_id: int) -> str:
        return self.tokenizer.decode([token_id])

    def token_text(self, token_id: int) -> str:
        return self._token_text(token_id)

    def text(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids)

    # prompts -----------------------------------------------------------------------------------
    def encode_prompt(self, prompt: str, max_new_tokens: int, *, truncate: bool = True) -> tuple[list[int], list[str]]:
        """Token ids of the prompt, cut from the left when prompt + new tokens exceed the context."""
        if not isinstance(prompt, str) or not prompt.strip():
            raise InvalidSetting("The prompt is empty; type some text for the model to continue.")
        _check_text(prompt, "prompt")
        ids = self.tokenizer.encode(prompt)
        room = self.facts.context_length - max_new_tokens
        if len(ids) <= room:
            return ids, []
        cut = len(ids) - room
        head = f"The prompt has {len(ids)} tokens but the model sees {self.facts.context_length}; the first {cut}"
        tail = f"so that the prompt and {max_new_tokens} new tokens fit"
        if not truncate:
            raise InvalidSetting(f"{head} tokens would have to be cut {tail} (pass --truncate to cut them).")
        return ids[cut:], [f"{head} tokens were cut {tail}."]

    def _given_ids(self, ids: list[int], max_new_tokens: int) -> list[int]:
        bad = [i for i in ids if isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < self.facts.vocab_size]
        if not ids or bad:
            raise InvalidSetting(f"prompt_ids must be token ids below {self.facts.vocab_size}, got "
                                 f"{bad[0] if bad else 'none'!r}.")
        if len(ids) + max_new_tokens > self.facts.context_length:
            raise InvalidSetting(f"The prompt's {len(ids)} ids and {max_new_tokens} new tokens do not fit "
                                 f"{self.label}'s {self.facts.context_length}-token context.")
        return list(ids)

    def encode_text(self, text: str) -> list[int]:
        """A setting's text as typed, no special tokens added (so " king" is the word-initial form)."""
        return TokenTexts(self.tokenizer).ids(text)

    def check(self, settings: DecodeSettings) -> None:
        validate(settings, vocab_size=self.facts.vocab_size, context_length=self.facts.context_length,
                 encode=self.encode_text)

    def check_memory(self, runs: list[DecodeSettings], prompt_len: int,
                     others: list[dict[str, "Playground"]] | None = None) -> None:
        rows = sum(s.rows for s in runs)
        total_len = prompt_len + max(s.max_new_tokens for s in runs)
        need = engine.state_bytes_estimate(self.facts, rows, total_len)
        need += sum(engine.state_bytes_estimate(pg.facts, s.rows, total_len)
                    for s, o in zip(runs, others or []) for pg in o.values())
        free = _free_memory(self.lm.device)
        if need > 0.8 * free:
            raise InvalidSetting(
                f"These runs need about {need / 2**30:.1f} GiB for {rows} rows of state but only "
                f"{free / 2**30:.1f} GiB is free; lower num_beams or num_return_sequences.")

    # decoding ----------------------------------------------------------------------------------
    def compare(self, prompt: str, runs: list[DecodeSettings], *, truncate: bool = True, top_n: int = 10,
                keep_distributions: bool = False, forced_ids: list[int] | None = None,
                continuation: list[int] | None = None, on_step=None, max_rows: int = limits.MAX_ROWS,
                max_runs: int = limits.MAX_RUNS, prompt_ids: list[int] | None = None) -> DecodeResult:
        """Decode every run on one prompt, as one batch after a single prefill.

        `continuation` ids are appended to the prompt's ids as they are (not re-tokenized), so a
        branch continues from exactly the token path it was taken from. `prompt_ids`: the prompt as ids
        already (another model's with the same tokenizer, `core.model_comparison`), used as they are."""
        if not runs:
            raise InvalidSetting("There is nothing to run: add at least one strategy.")
        if not isinstance(top_n, int) or not 1 <= top_n <= 100:
            raise InvalidSetting(f"top_n (candidates recorded per step) must be from 1 to 100, got {top_n!r}.")
        for s in runs:
            self.check(s)
        longest = max(s.max_new_tokens for s in runs)
        if forced_ids is not None:
            if len(runs) != 1 or runs[0].is_beam or len(forced_ids) < longest:
                raise InvalidSetting(
                    f"forced_ids must give at least max_new_tokens={longest} tokens for one greedy or sampling "
                    f"run, got {len(forced_ids)} for {len(runs)} run(s).")
            bad = [i for i in forced_ids if isinstance(i, bool) or not isinstance(i, int)
                   or not 0 <= i < self.facts.vocab_size]
            if bad:
                raise InvalidSetting(f"forced_ids must be token ids below {self.facts.vocab_size}, got {bad[0]!r}.")
        others = self.run_models(runs)
        self.check_budget(runs, others, max_rows=max_rows, max_runs=max_runs)
        if prompt_ids is not None:
            ids, notices = self._given_ids(prompt_ids, longest + len(continuation or [])), []
        else:
            ids, notices = self.encode_prompt(prompt, longest + len(continuation or []), truncate=truncate)
        ids = ids + list(continuation or [])
        _check_other_contexts(runs, others, len(ids))
        started = time.perf_counter()
        raw_runs = self.decode_ids(ids, runs, notices, top_n=top_n, keep_distributions=keep_distributions,
                                   forced_ids=forced_ids, on_step=on_step, others=others)
        traces = [self._trace(r, len(ids)) for r in raw_runs]
        return DecodeResult(self.label, self.device, ids, self.text(ids), traces, notices,
                            time.perf_counter() - started, self.dtype, self.engine, loaded_from=self.name)

    def decode_ids(self, ids: list[int], runs: list[DecodeSettings], notices: list[str], *, top_n: int,
                   keep_distributions: bool, forced_ids: list[int] | None, on_step,
                   others: list[dict[str, "Playground"]] | None = None) -> list[RawRun]:
        """The runs on checked prompt ids, as `RawRun`s: here, our engine in this process (a backend
        overrides this, and may add to `notices`). `others`: `run_models(runs)`."""
        others = others if others is not None else self.run_models(runs)
        self.check_memory(runs, len(ids), others)
        for s, o in zip(runs, others):
            if s.runner.decodes_alone:
                self._check_checks_drafts(s, o)
        return engine.decode_batch(self.lm, ids, runs, top_n=top_n, keep_distributions=keep_distributions,
                                   forced_ids=forced_ids, on_step=on_step,
                                   others=[{k: pg.lm for k, pg in o.items()} for o in others],
                                   texts=TokenTexts(self.tokenizer, self.lm.device))

    # other models --------------------------------------------------------------------------------
    def run_models(self, runs: list[DecodeSettings]) -> list[dict[str, "Playground"]]:
        """Per run, the models besides this one it uses (`Strategy.other_models`), by the setting naming
        each, loaded once per process; one sentence naming the setting for a model that is not offered
        or reads other token ids than this one."""
        found: list[dict[str, Playground]] = []
        for s in runs:
            mine = {}
            for setting, name in s.runner.other_models(s).items():
                try:
                    other = self.other(name)
                except PlaygroundError as exc:
                    raise InvalidSetting(f"{setting}={name!r} cannot be used: {exc}") from None
                if not self.shares_tokenizer(other) or other.facts.vocab_size != self.facts.vocab_size:
                    raise InvalidSetting(
                        f"{setting}={name!r} reads other token ids than {self.label} (a different tokenizer or "
                        f"vocabulary size), so its probabilities cannot be set against this model's; choose a "
                        "model that shares this one's tokenizer.")
                if setting in s.runner.contrasts_with and other.model is not None and other.model is self.model:
                    raise InvalidSetting(
                        f"{setting}={name!r} is the model that decodes, so every plausible token would score 0 "
                        f"against itself and {s.strategy} would pick by token id; choose a smaller model with "
                        "the same tokenizer.")
                mine[setting] = other
            found.append(mine)
        return found

    def _check_checks_drafts(self, s: DecodeSettings, others: dict[str, "Playground"]) -> None:
        """Assisted decoding feeds the target several tokens a pass and cuts its cache back to what it kept,
        and the draft's too: transformers' models can, the LSTM and our TransformerLM cannot."""
        for role, pg in (("target", self), *((setting, pg) for setting, pg in others.items())):
            if not can_rewind(pg.lm):
                raise InvalidSetting(
                    f"{s.name()} needs models that take several tokens a pass and cut their cache back, which the "
                    f"{role} {pg.label} cannot; use transformers models (the GPT-2 family, shakespeare-gpt2 with "
                    "shakespeare-draft).")

    def check_budget(self, runs: list[DecodeSettings], others: list[dict[str, "Playground"]] | None = None, *,
                     prompts: int = 1, max_rows: int = limits.MAX_ROWS, max_runs: int = limits.MAX_RUNS) -> None:
        """The request budget (`limits.check_request`), counting the rows each run decodes on every model
        it uses: this one's, and as many on each other model (an amateur or a draft steps along)."""
        others = others if others is not None else self.run_models(runs)
        extra = [(pg.label, s.rows, pg.parameters) for s, o in zip(runs, others) for pg in o.values()]
        limits.check_request(runs=len(runs), rows=sum(s.rows for s in runs),
                             new_tokens=max(s.max_new_tokens for s in runs), parameters=self.parameters,
                             device_type=self.device_type, prompts=prompts, max_rows=max_rows, max_runs=max_runs,
                             others=extra)

    def models_fingerprint(self, runs: list[DecodeSettings]) -> tuple:
        """What, besides `fingerprint()`, decides these runs' results: the weights of the other models they
        name (a cache key's part; a name alone would not see a retrained model)."""
        return tuple((setting, name, registry.model_revision(name))
                     for s in runs for setting, name in s.runner.other_models(s).items())

    def decode(self, prompt: str, settings: DecodeSettings, **kwargs) -> DecodeResult:
        return self.compare(prompt, [settings], **kwargs)

    def score(self, text: str) -> ScoreResult:
        if not isinstance(text, str) or not text.strip():
            raise InvalidSetting("The text is empty; paste some text to score.")
        _check_text(text, "text")
        return self.score_ids(self.tokenizer.encode(text))

    def score_ids(self, ids: list[int]) -> ScoreResult:
        """Every token after the first, scored given all the tokens before it: the rule decoding
        follows too (no <|endoftext|> is put in front), so a prompt and its continuation score here
        exactly as the decoding pages show them."""
        if len(ids) < 2:
            raise InvalidSetting("The text has fewer than two tokens; the first has no context, so there is "
                                 "nothing to score.")
        tokens = [ScoredToken(i, self.token_text(i), lp, rank, -lp / 0.6931471805599453, top, top_p)
                  for i, lp, rank, top, top_p in score_ids(self.lm, ids, None)]
        return ScoreResult(self.label, tokens, unscored_first_token=True, first_token=self.token_text(ids[0]))

    # traces ------------------------------------------------------------------------------------
    def _trace(self, raw: RawRun, prompt_len: int) -> RunTrace:
        s = raw.settings
        sequences = [self._sequence(q, prompt_len) for q in raw.sequences]
        tree = None
        if raw.beam_tree is not None:
            tree = [BeamNode(n.id, n.step, n.parent, n.token_id, self.token_text(n.token_id), n.score,
                             n.status, n.finished_score, n.group) for n in raw.beam_tree]
        notices = []
        if any(q.finish_reason == "context" for q in sequences):
            notices.append(f"Generation stopped at the model's {self.facts.context_length}-token context.")
        return RunTrace(s.strategy, s.name(), s.params(), sequences, tree, notices, raw.target_forwards, raw.seconds,
                        self._speculation(raw))

    def _speculation(self, raw: RawRun) -> Speculation | None:
        spec = raw.speculation
        if spec is None:
            return None
        checks = [DraftCheck(i, c.first_token, c.drafted, [self.token_text(t) for t in c.drafted], c.accepted, c.token,
                             self.token_text(c.token), c.rejected,
                             self.token_text(c.rejected) if c.rejected is not None else None, c.draft_probs,
                             c.target_probs) for i, c in enumerate(spec.checks)]
        return Speculation(spec.source, checks, raw.target_forwards, spec.draft_forwards)

    def _sequence(self, raw: RawSequence, prompt_len: int) -> Sequence:
        steps = []
        for i, st in enumerate(raw.steps):
            top = [Candidate(t, self.token_text(t), p, pp)
                   for t, p, pp in zip(st.top_ids, st.top_probs, st.top_processed_probs)]
            banned_tokens = {name: [self.token_text(t) for t in ids] for name, ids in st.banned.items()}
            steps.append(Step(
                index=i, id=st.id, token=self.token_text(st.id), logprob=st.logprob,
                processed_logprob=st.processed_logprob, rank=st.rank, processed_rank=st.processed_rank,
                entropy=st.entropy, processed_entropy=st.processed_entropy, top=top, kept=st.kept,
                banned=st.banned, curve=st.curve, banned_tokens=banned_tokens, distribution=st.distribution,
                drafted=st.drafted))
        reason = raw.finish_reason
        if reason == "max_new_tokens" and prompt_len + len(steps) >= self.facts.context_length:
            reason = "context"
        return Sequence(raw.ids, self.text(raw.ids), steps, reason, raw.beam_score, raw.finish_detail)


def _check_other_contexts(runs: list[DecodeSettings], others: list[dict[str, Playground]], prompt_len: int) -> None:
    """Another model a run uses must see the prompt and the run's new tokens, as this one does."""
    for s, o in zip(runs, others):
        for setting, pg in o.items():
            if prompt_len + s.max_new_tokens > pg.facts.context_length:
                raise InvalidSetting(
                    f"{setting}={pg.label!r} sees {pg.facts.context_length} tokens, fewer than the prompt's "
                    f"{prompt_len} and max_new_tokens={s.max_new_tokens}; shorten the prompt or max_new_tokens.")


def _playground(cls, name: str, loaded: loaded_models.LoadedModel, allow_paths: bool, forward: str) -> Playground:
    """One Playground per class, name, loaded model and forward pass, so its token texts and fingerprint are
    computed once; kept on the loaded model, so it goes when the model goes."""
    lm = loaded.adapter(forward)
    key = (cls, name, allow_paths, lm.engine)
    if key not in loaded.built:
        pg = cls(name, lm, loaded.tokenizer, loaded.model)
        pg.allow_paths = allow_paths
        pg.forward = forward
        loaded.built.setdefault(key, pg)
    return loaded.built[key]


MAX_TEXT_CHARS = 200_000  # far past any context; tokenizing more is work for nothing


def _check_text(text: str, what: str) -> None:
    if len(text) > MAX_TEXT_CHARS:
        raise InvalidSetting(f"The {what} has {len(text):,} characters; at most {MAX_TEXT_CHARS:,} are accepted.")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        # what Python makes of invalid UTF-8 bytes on a command line (lone surrogates)
        raise InvalidSetting(f"The {what} is not valid UTF-8 text; check its encoding.") from None


def _free_memory(device: torch.device) -> int:
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    try:
        import os

        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 1 << 40  # unknown: do not refuse


__all__ = ["Playground", "DecodeResult", "default_lineup"]
