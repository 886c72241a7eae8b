"""Decoding on a vLLM server, through its OpenAI-compatible `/v1/completions` API.

The server does the decoding (continuous batching across visitors, tensor parallelism across GPUs);
this module sends each run of a line-up as its own request, all at once, so the server batches them,
and turns what comes back into the same traces the local engine gives. What the server cannot give
is left empty (None) and said in words (`VLLMPlayground.cannot_show`), never filled with a guess:

- Prompts go as token ids, tokenized here with the model's own tokenizer, so both sides see the same ids.
- Log-probs are the server's raw ones (vLLM's default `--logprobs-mode raw_logprobs`). With
  `full_vocabulary` the server returns the whole distribution at every step, and the entropy, the
  cumulative curve, the chosen token's rank and the processed distribution (transformers' own
  processors applied here to the raw log-probs) are computed exactly as the local engine does. Else
  only the top-N alternatives come back; then the processed distribution is known only where no
  processor runs (greedy and beam search without penalties, where it equals the raw one).
- Beam search (`use_beam_search`) returns final beams only: no tree, and no log-probs; each returned
  beam is scored afterwards with one prompt-log-prob request.
- Only what is declared runnable on "vllm" goes to the server (an allow-list): the run's strategy class
  (`Strategy.runs_on`) and every setting its mode reads that is not at its default (`Knob.backends`).
  Any other run (no-repeat-n-gram, contrastive search, diverse beam search, typical-p, epsilon or eta
  sampling, a strategy added later) is skipped with a notice that names it, and nothing is sent for it.

The requests themselves, their timeouts and size caps, and the checks on what comes back are
`core.backends.vllm_client`'s. The server's address is never put in a link.
"""

from __future__ import annotations

import json
import os
from concurrent.futures import ThreadPoolExecutor

import torch
import torch.nn.functional as F

from core.backends.vllm_client import Malformed, VLLMServer, as_sentence, choices, token_id
from core.decoding.knobs import TokenTexts
from core.decoding.processors import RunContext, applied_to, apply_processors, build_processors
from core.decoding.settings import KNOBS, knobs_read
from core.decoding.strategies.base import RawRun, RawSequence, RawStep, RowStats, chosen_figures, raw_step
from core.errors import InvalidSetting, ModelUnavailable, PlaygroundError
from core.models import registry
from core.models.lm import ModelFacts
from core.playground import Playground

FULL_VOCABULARY_LIMIT = 65_536  # whole distributions are asked for only up to this vocabulary size
MAX_PARALLEL_REQUESTS = 16  # as many as a line-up has runs
BACKEND = "vllm"  # the key of this backend in the strategies' and settings' `backends`

# what the server cannot give, whatever is asked; the pages and the command line say these in words
ALWAYS_MISSING = [
    "the beam tree (vLLM returns the final beams only)",
    "what no-repeat-n-gram or the repetition penalty banned, step by step",
    "model internals: attention maps, layer anatomy, the distribution at a chosen step",
]
PARTIAL_MISSING = [
    "the entropy and the cumulative-probability curve (they need the whole distribution)",
    "the processed distribution of sampling runs (it needs the whole raw distribution; greedy and beam "
    "search without penalties show their raw one, which is the same)",
    "the chosen token's rank when it is not among the top-N alternatives",
]


def connect(url: str, model: str | None = None, *, full_vocabulary: bool = False) -> "VLLMPlayground":
    """The model a vLLM server serves, with its tokenizer loaded here; one sentence if that fails."""
    server = VLLMServer(url)
    served = server.models()
    names = [m.name for m in served]
    if not served:
        raise PlaygroundError(f"The vLLM server at {server.url} serves no model.")
    chosen = model or names[0]
    if chosen not in names:
        listed = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
        raise PlaygroundError(f"The vLLM server at {server.url} serves {listed}, not {chosen}; choose "
                              "one of those, or start the server with the model you want.")
    max_len = next(m.max_model_len for m in served if m.name == chosen)
    tokenizer, vocab_size, eos = _tokenizer_for(chosen)
    facts = ModelFacts(context_length=max_len or 1024, vocab_size=vocab_size, eos_token_ids=eos,
                       pad_token_id=eos[0] if eos else None, state_bytes_per_token=0)
    return VLLMPlayground(chosen, server, tokenizer, facts, full_vocabulary=full_vocabulary)


def _tokenizer_for(name: str):
    """The tokenizer, vocabulary size and EOS ids of a served model, from this machine's copy of it:
    the token ids sent and received must mean what the server means by them."""
    try:
        source = registry.resolve(name)
    except ModelUnavailable:
        raise ModelUnavailable(
            f"The server serves {name}, whose tokenizer this app does not have; serve the model under a name "
            f"the app knows ({', '.join(registry.available_models())}), or add its folder to "
            "PLAYGROUND_MODEL_DIRS.") from None
    folder = source.location if source.kind != "hub" else None
    tokenizer = registry.load_tokenizer(folder)
    vocab_size, eos = len(tokenizer), ()
    config_file = os.path.join(folder, "config.json") if folder else ""
    if config_file and os.path.isfile(config_file):
        with open(config_file, encoding="utf-8") as f:
            config = json.load(f)
        vocab_size = int(config.get("vocab_size") or vocab_size)
        raw_eos = config.get("eos_token_id")
        eos = tuple(raw_eos) if isinstance(raw_eos, list) else ((int(raw_eos),) if raw_eos is not None else ())
    elif tokenizer.eos_token_id is not None:
        eos = (int(tokenizer.eos_token_id),)
    return tokenizer, vocab_size, eos


class VLLMPlayground(Playground):
    """A `Playground` whose runs decode on a vLLM server. Prompts, checks, token texts and the traces'
    assembly are the local playground's; only `decode_ids` and `score_ids` go to the server."""

    backend = "vllm"

    def __init__(self, name: str, server: VLLMServer, tokenizer, facts: ModelFacts, *, full_vocabulary: bool):
        super().__init__(name, None, tokenizer, facts=facts)
        self.server = server
        self.full_vocabulary = bool(full_vocabulary) and facts.vocab_size <= FULL_VOCABULARY_LIMIT

    @property
    def device(self) -> str:
        return "vLLM server"

    @property
    def device_type(self) -> str:
        # the server's devices are not this machine's to budget: `parameters` is 0 here, so nothing is refused
        return "remote"

    @property
    def dtype(self) -> str:
        return "as served"

    def fingerprint(self) -> tuple:
        # a cache key only (never shown, never in a link): results differ per server and per mode
        if self._fingerprint is None:
            self._fingerprint = ("vllm", self.server.url, self.name, self.server.version(), self.full_vocabulary)
        return self._fingerprint

    def cannot_show(self) -> list[str]:
        """What this backend cannot give, in words, for every page to say."""
        return ALWAYS_MISSING + ([] if self.full_vocabulary else PARTIAL_MISSING)

    @staticmethod
    def unsupported(s, texts=None) -> str | None:
        """Why this backend cannot run these settings, or None: what the strategy class and the settings
        its mode reads do not declare runnable here is refused, by name. `texts` (a `TokenTexts`) lets a
        setting that is text say whether its tokens suit the server."""
        runs = s.runner.runs_on(BACKEND)
        if runs is None:
            return f"vLLM has no {s.mode.replace('_', ' ')}"
        for setting, name in s.runner.other_models(s).items():
            return (f"a vLLM server decodes each request with the one model it serves, so {setting}={name} "
                    "cannot join in; its own speculative decoding is configured when it starts, not per request")
        for name, k in knobs_read(s.mode):
            taken = k.runs_on(BACKEND)
            if taken is None and getattr(s, name) != k.default:
                return f"vLLM's API has no {name}"
            if taken is not None and (why := taken.objection(s, texts)):
                return why
        for p in applied_to(s):  # a processor can be on at its settings' defaults
            if any(KNOBS[name].runs_on(BACKEND) is None for name in p.knobs):
                return f"vLLM's API has no {p.knobs[0]}"
        return runs.refuse(s)

    def _fields(self, s) -> dict:
        """A completion request's fields for these settings: the strategy's, then every setting's it reads."""
        fields = dict(s.runner.runs_on(BACKEND).send(s))
        for _, k in knobs_read(s.mode):
            if (taken := k.runs_on(BACKEND)) is not None:
                fields.update(taken.fields(s, self.texts))
        return fields

    @property
    def texts(self) -> TokenTexts:
        return TokenTexts(self.tokenizer)

    # decoding ------------------------------------------------------------------------------------
    def run_models(self, runs: list) -> list[dict]:
        # no model of this process joins a server's run: such runs are refused by name (`unsupported`)
        return [{} for _ in runs]

    def decode_ids(self, ids: list[int], runs: list, notices: list[str], *, top_n: int, keep_distributions: bool,
                   forced_ids: list[int] | None, on_step, others: list[dict] | None = None) -> list[RawRun]:
        """The runs vLLM's API can do, as concurrent requests; the others are named in `notices`."""
        if forced_ids is not None or keep_distributions:
            raise InvalidSetting("The vLLM backend cannot follow a given token path or return whole processed "
                                 "distributions; use the local backend for this view.")
        runnable = [s for s in runs if self.unsupported(s, self.texts) is None]
        for s in runs:
            if (why := self.unsupported(s, self.texts)) is not None:
                notices.append(f"Skipped on the vLLM backend: {s.name()} ({why}).")
        if not runnable:
            raise InvalidSetting("The vLLM backend can run none of these runs: " + " ".join(notices))
        with ThreadPoolExecutor(max_workers=min(MAX_PARALLEL_REQUESTS, len(runnable))) as pool:
            futures = [pool.submit(as_sentence(self._run), s, ids, top_n) for s in runnable]
            raw_runs = []
            for k, future in enumerate(futures):
                raw_runs.append(future.result())
                if on_step is not None:
                    on_step(k * 4, [r.sequences[0].ids for r in raw_runs])
        return raw_runs

    def _logprobs_asked(self, top_n: int) -> int:
        return self.facts.vocab_size if self.full_vocabulary else top_n

    def _run(self, s, prompt_ids: list[int], top_n: int) -> RawRun:
        max_new = min(s.max_new_tokens, self.facts.context_length - len(prompt_ids))
        if s.runner.runs_on(BACKEND).request == "beam":
            return self._beam_run(s, prompt_ids, max_new, top_n)
        body = {"model": self.name, "prompt": prompt_ids, "max_tokens": max_new, "n": s.num_return_sequences,
                "logprobs": self._logprobs_asked(top_n), "return_tokens_as_token_ids": True,
                "skip_special_tokens": False, **self._fields(s)}
        data = self.server.complete(body, max_new * s.num_return_sequences)
        sequences = []
        for choice in sorted(choices(data), key=lambda c: c.get("index", 0)):
            logprobs = choice.get("logprobs") or {}
            ids = self._in_vocabulary([token_id(t) for t in logprobs.get("tokens") or []])
            dists = [{token_id(k): float(v) for k, v in (d or {}).items()} for d in logprobs.get("top_logprobs") or []]
            for dist in dists:
                self._in_vocabulary(list(dist))
            if not ids or len(dists) != len(ids):  # max_tokens >= 1: vLLM always sends a token and its log-probs
                raise PlaygroundError("The vLLM server's answer has no log-probs for every token; is it vLLM?")
            steps = self._steps(s, prompt_ids, ids, dists, top_n)
            reason, detail = _finish_reason(choice, ids, self.facts)
            sequences.append(RawSequence(steps, reason, finish_detail=detail))
        return RawRun(s, sequences)

    def _beam_run(self, s, prompt_ids: list[int], max_new: int, top_n: int) -> RawRun:
        # the strategy's own fields only: vLLM's beam search takes no sampling parameters, so the settings
        # it could not honour were refused before (see BeamSearch.backends)
        body = {"model": self.name, "prompt": prompt_ids, "max_tokens": max_new, "n": s.num_beams,
                "use_beam_search": True, "temperature": 0.0, "return_token_ids": True, "skip_special_tokens": False,
                **s.runner.runs_on(BACKEND).send(s)}
        data = self.server.complete(body, max_new * s.num_beams)
        beams = sorted(choices(data), key=lambda c: c.get("index", 0))[:s.num_return_sequences]
        sequences = []
        for choice in beams:
            ids = self._in_vocabulary([int(i) for i in choice.get("token_ids") or []])
            if not ids:
                raise PlaygroundError("The vLLM server's beams have no token ids; is it vLLM 0.10 or newer?")
            dists = self._prompt_logprobs(prompt_ids + ids, top_n)[len(prompt_ids):]
            steps = self._steps(s, prompt_ids, ids, dists, top_n)
            score = sum(st.logprob for st in steps) / (max(1, len(ids)) ** s.length_penalty)
            reason, detail = _finish_reason(choice, ids, self.facts)
            sequences.append(RawSequence(steps, reason, beam_score=score, finish_detail=detail))
        return RawRun(s, sequences)

    def _prompt_logprobs(self, ids: list[int], top_n: int) -> list[dict[int, float]]:
        """Per position of `ids`, the raw log-probs the server gives for it ({} for the first)."""
        body = {"model": self.name, "prompt": ids, "max_tokens": 1, "temperature": 0.0,
                "prompt_logprobs": self._logprobs_asked(top_n)}
        data = self.server.complete(body, 1)
        positions = (choices(data)[0].get("prompt_logprobs") or [])
        if len(positions) != len(ids):
            raise PlaygroundError("The vLLM server gave no prompt log-probs; is it vLLM 0.6 or newer?")
        dists = [{int(k): float(v["logprob"]) for k, v in (p or {}).items()} for p in positions]
        for dist in dists:
            self._in_vocabulary(list(dist))
        return dists

    def _in_vocabulary(self, ids: list[int]) -> list[int]:
        if any(not 0 <= i < self.facts.vocab_size for i in ids):
            raise Malformed("token id outside the vocabulary")
        return ids

    def _steps(self, s, prompt_ids: list[int], ids: list[int], dists: list[dict[int, float]], top_n: int) -> list[RawStep]:
        replayable = all(p.replays_on_logprobs for p in applied_to(s))  # the server sends log-probs, not logits
        context = RunContext("cpu", len(prompt_ids), self.facts.eos_token_ids, self.texts)
        processors = build_processors(s, context) if self.full_vocabulary and replayable else None
        steps = []
        for i, (token, dist) in enumerate(zip(ids, dists)):
            if token not in dist:
                raise PlaygroundError("The vLLM server's answer lacks the log-prob of a token it chose.")
            if processors is not None and len(dist) >= self.facts.vocab_size:
                steps.append(self._full_step(processors, prompt_ids + ids[:i], token, dist, top_n))
            else:
                steps.append(_partial_step(s, token, dist, top_n))
        return steps

    def _full_step(self, processors, context: list[int], token: int, dist: dict[int, float], top_n: int) -> RawStep:
        """The whole raw distribution: every figure as the local engine computes it."""
        raw = torch.full((1, self.facts.vocab_size), float("-inf"))
        raw[0, list(dist)] = torch.tensor(list(dist.values()))
        raw_lp = F.log_softmax(raw, dim=-1)  # the server's log-probs, renormalised over its float error
        scores, kept, banned = apply_processors(processors, torch.tensor([context]), raw_lp)
        proc_lp = raw_lp if scores is raw_lp else F.log_softmax(scores, dim=-1)
        stats = RowStats(raw_lp, proc_lp, kept, banned, min(top_n, self.facts.vocab_size), False)
        return raw_step(stats, 0, token, chosen_figures(raw_lp, proc_lp, torch.tensor([token])).to_host()[0])

    # scoring ---------------------------------------------------------------------------------------
    def score_ids(self, ids: list[int]):
        return as_sentence(self._score_ids)(ids)

    def _score_ids(self, ids: list[int]):
        from core.decoding.scoring import ScoredToken, ScoreResult

        if len(ids) < 2:
            raise InvalidSetting("The text has fewer than two tokens; the first has no context, so there is "
                                 "nothing to score.")
        if len(ids) > self.facts.context_length:
            raise InvalidSetting(f"The text has {len(ids)} tokens but the server's model sees "
                                 f"{self.facts.context_length}; the vLLM backend scores one context at a time.")
        body = {"model": self.name, "prompt": ids, "max_tokens": 1, "temperature": 0.0, "prompt_logprobs": 1}
        positions = choices(self.server.complete(body, 1))[0].get("prompt_logprobs") or []
        if len(positions) != len(ids):
            raise PlaygroundError("The vLLM server gave no prompt log-probs; is it vLLM 0.6 or newer?")
        tokens = []
        for token, entries in zip(ids[1:], positions[1:]):
            mine = entries[str(token)]
            top_id, top = min(entries.items(), key=lambda kv: kv[1].get("rank", 1 << 30))
            self._in_vocabulary([int(top_id)])
            tokens.append(ScoredToken(token, self.token_text(token), float(mine["logprob"]), int(mine["rank"]),
                                      -float(mine["logprob"]) / 0.6931471805599453, int(top_id),
                                      float(torch.tensor(float(top["logprob"])).exp())))
        return ScoreResult(self.name, tokens, unscored_first_token=True, first_token=self.token_text(ids[0]))


def _finish_reason(choice: dict, ids: list[int], facts: ModelFacts) -> tuple[str, str | None]:
    """(finish reason, the stop string met or None): vLLM names the stop string it met in `stop_reason`."""
    if ids and ids[-1] in facts.eos_token_ids:
        return "eos", None
    if choice.get("finish_reason") == "stop" and isinstance(choice.get("stop_reason"), str):
        return "stop_string", choice["stop_reason"][:1000]
    return "max_new_tokens", None


def _partial_step(s, token: int, dist: dict[int, float], top_n: int) -> RawStep:
    """Only the top-N alternatives (plus the chosen token): what can be known from them, None elsewhere."""
    lp = dist[token]
    ranked = sorted(dist.items(), key=lambda kv: -kv[1])
    above = sum(1 for _, v in ranked if v > lp)
    # the answer holds the top-N and, when it is not among them, the chosen token as well
    rank = above + 1 if above < top_n else None
    top = ranked[:top_n]
    # without processors (greedy, beam search) the processed distribution is the raw one
    same = not s.do_sample and not applied_to(s)
    probs = [float(torch.tensor(v).exp()) for _, v in top]
    return RawStep(id=token, logprob=lp, processed_logprob=lp if same else None, rank=rank,
                   processed_rank=rank if same else None, entropy=None, processed_entropy=None,
                   top_ids=[k for k, _ in top], top_probs=probs, top_processed_probs=probs if same else [None] * len(top),
                   kept={}, banned={}, curve=[])
