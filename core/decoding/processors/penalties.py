"""The penalties generate() applies before any warper, in every mode (their settings are declared in
`core.decoding.settings`, or by the strategy that reads them)."""

from transformers.generation.logits_process import NoRepeatNGramLogitsProcessor, RepetitionPenaltyLogitsProcessor

from core.decoding.knobs import num
from core.decoding.processors import BANS, Processor, register

register(Processor(
    # group beam search builds it at every step from the tokens the earlier groups chose, so it is never
    # built here; declared for its name, label and place in the order
    name="diversity_penalty", label="diversity penalty", does=BANS, verb="lowered by", knobs=("diversity_penalty",),
    order=10, active=lambda s: False, build=None, removes=False, reorders=True))

register(Processor(
    name="repetition_penalty", label="repetition penalty", does=BANS, verb="down-weighted by",
    knobs=("repetition_penalty",), order=20, active=lambda s: s.repetition_penalty != 1.0,
    build=lambda s, device: RepetitionPenaltyLogitsProcessor(s.repetition_penalty),
    in_name=lambda s: f"repetition penalty {num(s.repetition_penalty)}", removes=False, reorders=True,
    replays_on_logprobs=False))

register(Processor(
    name="no_repeat_ngram", label="no-repeat-n-gram", does=BANS, knobs=("no_repeat_ngram_size",), order=30,
    active=lambda s: s.no_repeat_ngram_size != 0,
    build=lambda s, device: NoRepeatNGramLogitsProcessor(s.no_repeat_ngram_size),
    applied=lambda s: f"no-repeat-{s.no_repeat_ngram_size} bans", in_name=lambda s: f"no-repeat {s.no_repeat_ngram_size}"))
