"""Assisted (speculative) decoding and prompt lookup decoding: generate()'s `assistant_model=` and
`prompt_lookup_num_tokens=`, ported from transformers 5.x's `_assisted_decoding` for one prompt.

Each *check* is one forward pass of the target over the tokens it has not seen yet plus the drafted ones
(the first check includes the whole prompt, as generate()'s first iteration does). Its logits at every
position are processed as a plain run would process them (transformers' processors, in generate()'s
order), and then:

- greedy: the drafted tokens are kept up to the first that is not the target's most likely token, and
  the target's own token follows (the one it put in place of the rejected draft, or a bonus token after
  the last when all were accepted). So the tokens are plain greedy decoding's, whatever the draft;
- sampling with a draft model: speculative sampling (Leviathan et al. 2023, Algorithm 1; Chen et al.
  2023): draft token x with draft probability q(x) and target probability p(x) is kept with
  probability min(1, p(x) / q(x)); at the first rejection the target's token is drawn from
  norm(max(0, p - q)), after the last acceptance from p. The accepted tokens follow p, the target's
  processed distribution, exactly;
- sampling with prompt lookup (no draft distribution): one token is drawn from p at every position and
  the drafted tokens are kept while they equal the draws.

The draft (`AssistedCandidateGenerator`): the draft model decodes up to `num_assistant_tokens` tokens
with the target's processors, stopping at end-of-text, at the length limit, or after a token whose
processed probability is below `assistant_confidence_threshold` (generate()'s `ConfidenceCriteria`;
transformers adapts that threshold with scikit-learn when it is installed, which this project is not).
Before each draft its cache is cut back to all but the last two tokens, which it reads again, as
generate() does. Prompt lookup (`PromptLookupCandidateGenerator`): the first earlier occurrence of the
sequence's last n-gram (n from `max_matching_ngram_size` down to 1) proposes the tokens that followed it.

Stopping criteria (stop strings, with prompt lookup: generate() 5.23 raises on them with a draft model,
whose own generate() gets them without the tokenizer, and so do we, in one sentence) are asked once per
check, after the tokens it kept, as generate()'s assisted loop asks them: a stop string that a check
completes before its last token is not seen there, so such a run can stop later than plain decoding would.

Random draws come from the run's own generator, seeded with its seed, in generate()'s order (each draft
token, then one uniform per drafted token, then the target's token), so a run is reproducible from its
seed and makes the draws generate() makes after `torch.manual_seed(seed)`. The tokens equal generate()'s
with prompt lookup, and with a draft model when no sampling warper is on (temperature 1, no top-k/top-p
...). With a warper they differ: transformers 5.23's assistant applies the sampling warpers twice (the
target's list is merged into the assistant's processors, and then the assistant's generate() appends its
own warpers again: temperature 0.9 becomes 0.81 for the draft), so its draft distribution q is not the
one it samples the target with. We apply them once, as the paper's q; both sample the target's
distribution exactly, but from different draft proposals (tests/test_speculative.py shows that applying
them twice in our draft gives generate()'s tokens).

These runs take a variable number of tokens per forward pass, so each decodes alone (`decodes_alone`),
beside the batch of the other runs of its line-up. They need models whose cache can be cut back to a
length: transformers' causal LMs (the GPT-2 family, shakespeare-gpt2, shakespeare-draft).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from core.decoding import stopping
from core.decoding.knobs import knob, num
from core.decoding.processors import apply_processors
from core.decoding.strategies import register
from core.decoding.strategies.base import (
    RawRun,
    RawSequence,
    RowStats,
    Strategy,
    chosen_figures,
    raw_step,
)
from core.decoding.strategies.single import Sampling
from core.errors import InvalidSetting

MAX_ASSISTANT_TOKENS = 64  # tokens drafted per check; generate()'s default is 20
SCHEDULES = ("constant", "heuristic", "heuristic_transient")


def assisting(s) -> bool:
    """Whether these settings ask for assisted decoding (a draft model or prompt lookup)."""
    return s.assistant_model is not None or s.prompt_lookup_num_tokens is not None


@dataclass
class Check:
    """One forward pass of the target over drafted tokens, and what it made of them."""
    first_token: int  # index (in the generated tokens) of the first token this check produced
    drafted: list[int]  # the draft's proposals, in order
    accepted: int  # how many of them were kept (a prefix)
    token: int  # the target's own token after them: in place of drafted[accepted], or a bonus after the last
    draft_probs: list[float]  # the draft's processed probability of each drafted token (prompt lookup: empty)
    target_probs: list[float]  # the target's processed probability of each drafted token

    @property
    def rejected(self) -> int | None:
        """The first drafted token the target did not keep, if any."""
        return self.drafted[self.accepted] if self.accepted < len(self.drafted) else None


@dataclass
class Speculation:
    """What an assisted run did, check by check."""
    source: str  # the draft model's name, or "prompt lookup"
    checks: list[Check] = field(default_factory=list)
    draft_forwards: int = 0


@register("assisted_generation")
class AssistedGreedy(Strategy):
    """Greedy decoding with drafted tokens checked by the target: plain greedy's tokens, fewer target passes."""

    strategy = "greedy"
    precedence = 5  # over plain greedy (and beam search, which it refuses by name) when a draft is asked for
    decodes_alone = True
    settings = {
        "assistant_model": knob(None, "assisted decoding: the draft model that proposes tokens for the target to "
                                "check, by name (shares the target's tokenizer; e.g. shakespeare-draft)",
                                kind="model", keyword=False, kwarg_when_default=False),
        "num_assistant_tokens": knob(20, "assisted decoding: tokens the draft proposes per check (generate()'s "
                                     "default 20)", kind="int", low=1, high=MAX_ASSISTANT_TOKENS),
        "num_assistant_tokens_schedule": knob(
            "constant", "assisted decoding: constant, or heuristic (2 more tokens after a check that took them all, "
            "1 fewer otherwise; within the run)", kind="choice", choices=SCHEDULES),
        "assistant_confidence_threshold": knob(
            0.4, "assisted decoding: the draft stops after a token it gives less than this probability (0 = off; "
            "generate()'s default 0.4)", low=0, high=1, open_high=True),
        "prompt_lookup_num_tokens": knob(None, "prompt lookup decoding: tokens proposed from an earlier occurrence of "
                                         "the last n-gram (None = off)", kind="optional_int", low=1,
                                         high=MAX_ASSISTANT_TOKENS, kwarg_when_default=False),
        "max_matching_ngram_size": knob(None, "prompt lookup decoding: the longest n-gram looked up (None: 2, "
                                        "generate()'s)", kind="optional_int", low=1, high=16, kwarg_when_default=False),
    }

    @classmethod
    def claims(cls, s):
        return assisting(s) and s.strategy != "sample"

    @classmethod
    def describe(cls, s):
        return ["greedy", cls.assisted_by(s)]

    @staticmethod
    def assisted_by(s) -> str:
        if s.prompt_lookup_num_tokens is not None:
            return f"prompt lookup {s.prompt_lookup_num_tokens}"
        schedule = "" if s.num_assistant_tokens_schedule == "constant" else f", {s.num_assistant_tokens_schedule}"
        return f"assisted by {s.assistant_model} ({s.num_assistant_tokens} drafted{schedule})"

    @classmethod
    def check(cls, s):
        if s.strategy not in ("greedy", "sample") and not (s.strategy == "beam" and s.num_beams == 1):
            raise InvalidSetting(
                f"assisted decoding drafts for greedy decoding or sampling, not {s.strategy}; generate() refuses it "
                "too. Use greedy or sample with assistant_model or prompt_lookup_num_tokens.")
        if s.assistant_model is not None and s.stop_strings:
            raise InvalidSetting(
                "stop_strings cannot end a run assisted by a draft model: generate() 5.23 refuses the pair (its draft's "
                "own generate() gets the stop strings without the tokenizer); use prompt_lookup_num_tokens, or no "
                "stop strings.")
        if s.assistant_model is not None and s.prompt_lookup_num_tokens is not None:
            raise InvalidSetting(
                f"assistant_model={s.assistant_model} and prompt_lookup_num_tokens={s.prompt_lookup_num_tokens} "
                "both propose drafts; choose one (set prompt_lookup_num_tokens to 0, or drop assistant_model).")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.draft_lm = self.other_lms.get("assistant_model")  # loaded by the playground (`other_models`)
        if self.settings.assistant_model is not None and self.draft_lm is None:
            raise InvalidSetting(f"The draft model {self.settings.assistant_model} was not loaded for this run.")
        self.sequences = self.sequences[:1]
        self.generator = torch.Generator(device=self.sequences.device)
        self.generator.manual_seed(self.settings.seed)
        self.records: list[tuple] = []  # per token: (id, drafted, figures)
        self.finish = "max_new_tokens"
        self.finish_detail: str | None = None
        self.speculation = Speculation(self.settings.assistant_model or "prompt lookup")
        self.target_forwards = 0
        self.seconds = 0.0
        self.draft_state = None
        self.drafting = self.settings.num_assistant_tokens

    # the target's choice ---------------------------------------------------------------------
    def choose(self, scores: torch.Tensor, candidates: torch.Tensor, draft_scores):
        """(tokens kept, n accepted) from processed target scores (L + 1, V) for L drafted `candidates`."""
        selected = scores.argmax(-1)
        return self._prefix(selected, candidates)

    @staticmethod
    def _prefix(selected, candidates):
        n = int(((candidates != selected[:-1]).cumsum(-1) < 1).sum())
        return selected[:n + 1], n

    # the draft -------------------------------------------------------------------------------
    def draft(self, room: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Proposed ids (L,) and, from a draft model, its processed scores (L, V)."""
        if self.settings.prompt_lookup_num_tokens is not None:
            return self._lookup(room), None
        limit = min(int(self.drafting), room)
        if limit <= 0:
            return self.sequences.new_zeros(0), None
        lm = self.draft_lm
        length = self.sequences.shape[1]
        if self.draft_state is None:
            logits, self.draft_state = lm.extend(self.sequences, None, keep=1)
        else:  # read the last two tokens again, as generate()'s assistant does (its cache keeps length - 2)
            lm.crop(self.draft_state, length - 2)
            logits, self.draft_state = lm.extend(self.sequences[:, length - 2:], self.draft_state, keep=1)
        self.speculation.draft_forwards += 1
        ids, all_scores, seq = [], [], self.sequences
        while True:
            scores = self.draft_scores(seq, logits[:, -1])
            token = self.draft_pick(scores)
            ids.append(token)
            all_scores.append(scores[0])
            seq = torch.cat([seq, token.view(1, 1)], dim=-1)
            stop = len(ids) >= limit or (len(self.eos) and bool(torch.isin(token, self.eos)))
            threshold = self.settings.assistant_confidence_threshold
            if not stop and threshold > 0:
                stop = float(F.softmax(scores[0], -1)[token]) < threshold
            if stop:
                break
            logits, self.draft_state = lm.extend(token.view(1, 1), self.draft_state, keep=1)
            self.speculation.draft_forwards += 1
        return torch.stack(ids), torch.stack(all_scores)

    def draft_scores(self, seq: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        """The draft's processed scores (1, V): the target's processors, once (q in Leviathan et al.)."""
        return apply_processors(self.processors, seq, logits)[0]

    def draft_pick(self, scores: torch.Tensor) -> torch.Tensor:
        return scores[0].argmax()

    def _lookup(self, room: int) -> torch.Tensor:
        """transformers' PromptLookupCandidateGenerator for one sequence: the first earlier match of the last
        n-gram, longest n first, proposes what followed it (cut before an end-of-text token)."""
        ids = self.sequences[0]
        length = ids.shape[0]
        empty = ids.new_zeros(0)
        if room <= 0:  # generate(): no room for a draft besides the target's own token
            return empty
        for n in range(min(self.settings.max_matching_ngram_size or 2, length - 1), 0, -1):
            windows = ids.unfold(0, n, 1)
            matches = (windows == ids[-n:]).all(-1).nonzero().flatten().tolist()
            for start in matches:
                begin = start + n
                end = min(begin + self.settings.prompt_lookup_num_tokens, length, self.prompt_len + self.max_new_tokens)
                if begin < end:
                    chosen = ids[begin:end]
                    chosen = self._allowed_prefix(chosen)
                    if chosen.numel() == 0:
                        continue
                    if len(self.eos):
                        at_eos = torch.isin(chosen, self.eos).nonzero()
                        if at_eos.numel():
                            chosen = chosen[:int(at_eos[0])]
                    return chosen
        return empty

    def _allowed_prefix(self, chosen):
        """generate()'s prompt lookup cuts its proposal at the first token a processor forbids (-inf on
        uniform logits given the tokens before it)."""
        if not self.processors:
            return chosen
        seq = self.sequences
        for i, token in enumerate(chosen.tolist()):
            fake = torch.ones(1, self.facts.vocab_size, device=seq.device)
            out, _, _ = apply_processors(self.processors, seq, fake)
            value = out[0, token]
            if value == -float("inf") or value == torch.finfo(value.dtype).min:
                return chosen[:i]
            seq = torch.cat([self.sequences, chosen[:i + 1].view(1, -1)], dim=-1)
        return chosen

    # the loop --------------------------------------------------------------------------------
    def decode_alone(self, lm, on_step=None) -> None:
        """Draft, check, keep; until end-of-text or max_new_tokens. Sets `done` at the end."""
        started = time.perf_counter()
        state = None
        end = self.prompt_len + self.max_new_tokens
        while not self.done:
            length = self.sequences.shape[1]
            candidates, draft_scores = self.draft(room=end - length - 1)
            fed = torch.cat([self.sequences[:, length - 1 if state is not None else 0:], candidates.view(1, -1)], -1)
            logits, state = lm.extend(fed, state, keep=candidates.numel() + 1)  # (1, L + 1, V)
            self.target_forwards += 1
            raw = logits[0]
            scores = torch.empty_like(raw)
            kept_all, banned_all = [], []
            seq = self.sequences
            for i in range(raw.shape[0]):
                s, kept, banned = apply_processors(self.processors, seq, raw[i:i + 1])
                scores[i] = s[0]
                kept_all.append(kept)
                banned_all.append(banned)
                if i < candidates.numel():
                    seq = torch.cat([seq, candidates[i].view(1, 1)], dim=-1)
            tokens, n = self.choose(scores, candidates, draft_scores)
            tokens = tokens[:end - length]  # generate(): never past max_length
            if len(self.eos):
                at_eos = torch.isin(tokens, self.eos).nonzero()
                if at_eos.numel():
                    tokens = tokens[:int(at_eos[0]) + 1]
            n = tokens.numel() - 1
            self._record(raw, scores, kept_all, banned_all, tokens, n, candidates, draft_scores)
            lm.crop(state, length + n)  # the target's cache: every token but the last
            if self.settings.num_assistant_tokens_schedule != "constant":
                self.drafting = self.drafting + 2 if n == candidates.numel() else max(1, self.drafting - 1)
            self.sequences = torch.cat([self.sequences, tokens.view(1, -1)], dim=-1)
            if len(self.eos) and bool(torch.isin(tokens[-1:], self.eos)):
                self.finish = "eos"
            elif self.stops and (found := stopping.met(self.stops, self.sequences)[0]) is not None:
                self.finish, self.finish_detail = found  # generate(): once per check, on the whole sequence
            self.done = self.finish != "max_new_tokens" or self.sequences.shape[1] >= end
            if on_step is not None:
                on_step()
        self.seconds = time.perf_counter() - started

    def _record(self, raw, scores, kept_all, banned_all, tokens, n, candidates, draft_scores) -> None:
        count = tokens.numel()
        raw_lp = F.log_softmax(raw[:count], -1)
        proc_lp = F.log_softmax(scores[:count], -1)
        kept = {k: torch.stack([kept_all[i][k][0] for i in range(count)]) for k in kept_all[0]}
        banned = {k: [banned_all[i][k][0] for i in range(count)] for k in banned_all[0]}
        stats = RowStats(raw_lp, proc_lp, kept, banned, self.top_n, self.keep_distributions)
        figures = chosen_figures(raw_lp, proc_lp, tokens).to_host()
        first = len(self.records)
        for i, token in enumerate(tokens.tolist()):
            self.stats.append((stats, i))
            self.records.append((token, i < n, figures[i]))
        drafted = candidates.tolist()
        target_probs = proc_lp[torch.arange(min(n + 1, len(drafted))), candidates[:min(n + 1, len(drafted))]].exp()
        draft_probs = []
        if draft_scores is not None and drafted:
            upto = min(n + 1, len(drafted))
            draft_probs = F.softmax(draft_scores[:upto], -1)[torch.arange(upto), candidates[:upto]].tolist()
        self.speculation.checks.append(Check(first, drafted, n, int(tokens[-1]), draft_probs, target_probs.tolist()))

    def advance(self, logits, hidden=None):
        raise NotImplementedError("assisted decoding runs alone (decode_alone), not one batch step at a time")

    def best_so_far(self) -> list[int]:
        return self.sequences[0, self.prompt_len:].tolist()

    def result(self) -> RawRun:
        steps = [raw_step(stats, row, token, chosen) for (stats, row), (token, _, chosen) in zip(self.stats, self.records)]
        for step, (_, drafted, _) in zip(steps, self.records):
            step.drafted = drafted
        return RawRun(self.settings, [RawSequence(steps, self.finish, finish_detail=self.finish_detail)],
                      target_forwards=self.target_forwards,
                      seconds=self.seconds, speculation=self.speculation)


@register("assisted_sampling")
class AssistedSampling(AssistedGreedy):
    """Sampling with drafted tokens: speculative sampling (Leviathan et al. 2023; Chen et al. 2023)."""

    strategy = "sample"
    samples = True
    settings = {}
    reads = (*Sampling.settings, *AssistedGreedy.settings)

    @classmethod
    def claims(cls, s):
        return assisting(s) and s.strategy == "sample"

    @classmethod
    def describe(cls, s):
        return [*Sampling.describe(s), cls.assisted_by(s)]

    def draft_pick(self, scores):
        return torch.multinomial(F.softmax(scores, -1), 1, generator=self.generator)[0, 0]

    def choose(self, scores, candidates, draft_scores):
        if candidates.numel() == 0 or draft_scores is None:
            # prompt lookup (or no room to draft): a draw from the target at every position, drafted
            # tokens kept while they equal the draws (generate()'s second case)
            selected = torch.multinomial(F.softmax(scores, -1), 1, generator=self.generator)[:, 0]
            return self._prefix(selected, candidates)
        return speculative_sampling(candidates, draft_scores, scores, self.generator)


def speculative_sampling(candidates, draft_scores, target_scores, generator):
    """Algorithm 1 of Leviathan et al. (transformers' `_speculative_sampling`, draws in its order).

    candidates (L,) drafted from draft_scores (L, V); target_scores (L + 1, V). Returns (tokens, n): the n
    accepted drafted tokens and the target's token after them."""
    length = candidates.numel()
    q = F.softmax(draft_scores, -1)
    p = F.softmax(target_scores, -1)
    positions = torch.arange(length, device=candidates.device)
    ratio = p[positions, candidates] / q[positions, candidates]
    r = torch.rand(ratio.shape, generator=generator, device=ratio.device, dtype=ratio.dtype)
    n = int(((~(r <= ratio)).cumsum(-1) < 1).sum())
    if n < length:
        residual = (p[n] - q[n]).clamp(min=0)
        residual = residual / residual.sum()
    else:
        residual = p[n]
    token = torch.multinomial(residual[None], 1, generator=generator)[0]
    return torch.cat([candidates[:n], token]), n
