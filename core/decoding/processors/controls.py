"""The rest of generate()'s controls that change the scores, each declared once with its own settings, at
generate()'s place in `_get_logits_processor` (transformers 5.23): classifier-free guidance first, then
the sequence bias, (the penalties,) bad words, min_new_tokens, the exponential decay length penalty and
the suppressed tokens; top-h among the warpers, after temperature. Each is transformers' own class.

Settings that are text (`bad_words`, `suppress_tokens`, `sequence_bias`, `negative_prompt`) hold it as
typed; the run's `RunContext` tokenizes it (no special tokens added, so " king" is the word-initial form),
and `validate()` says in one sentence when a text tokenizes to nothing, or to more than the one token a
setting needs. Stop strings end a run rather than change its scores: `core.decoding.stopping`.
"""

from __future__ import annotations

import torch
from transformers.generation.logits_process import (
    ExponentialDecayLengthPenalty,
    MinNewTokensLengthLogitsProcessor,
    NoBadWordsLogitsProcessor,
    SequenceBiasLogitsProcessor,
    SuppressTokensLogitsProcessor,
    TopHLogitsWarper,
    UnbatchedClassifierFreeGuidanceLogitsProcessor,
)

from core import limits
from core.decoding.knobs import Runs, knob, num
from core.decoding.processors import BANS, CUTS, RESHAPES, Processor, register
from core.errors import InvalidSetting

# vLLM's sampling parameters have these (bad_words as text, logit_bias by token id, min_tokens), sent also
# when off; its beam search request takes none of them. The rest are refused by name there.
def _not_on_vllm_beams(name: str, vllm_name: str):
    return lambda s: f"vLLM's beam search takes no {vllm_name}" if s.is_beam and getattr(s, name) else None


def _logit_bias(s, texts) -> dict:
    return {"logit_bias": {str(texts.one(text)): float(bias) for text, bias in s.sequence_bias}}


def _logit_bias_refusal(s, texts) -> str | None:
    if s.is_beam and s.sequence_bias:
        return "vLLM's beam search takes no logit_bias"
    longer = [(text, len(texts.ids(text))) for text, _ in s.sequence_bias if len(texts.ids(text)) != 1]
    if longer:
        return (f"vLLM's logit_bias takes one token per entry, and the sequence_bias text {longer[0][0]!r} is "
                f"{longer[0][1]} tokens")
    return None


_VLLM_BAD_WORDS = Runs(send=lambda s: {"bad_words": list(s.bad_words)},
                       refuse=_not_on_vllm_beams("bad_words", "bad_words"))
_VLLM_MIN_TOKENS = Runs(send=lambda s: {"min_tokens": s.min_new_tokens},
                        refuse=_not_on_vllm_beams("min_new_tokens", "min_tokens"))
_VLLM_LOGIT_BIAS = Runs(send=_logit_bias, refuse=_logit_bias_refusal, with_texts=True)
NO_GUIDANCE_ON_VLLM = "vLLM's API has no classifier-free guidance"
NO_DECAY_ON_VLLM = "vLLM's API has no exponential decay length penalty"
NO_TOP_H_ON_VLLM = "vLLM's API has no top-h sampling"
NO_SUPPRESS_ON_VLLM = "vLLM's API has no suppress_tokens (a bias of -100 by logit_bias is not a ban)"


def _count(items, what: str) -> str:
    """'2 bad words': a run's name counts a control's texts and never shows them, since pages show the name
    as a heading and the texts are a stranger's (the params, the JSON and the recipe hold them)."""
    return f"{len(items)} {what}{'s' if len(items) != 1 else ''}"


def _eos(context):
    return torch.tensor(context.eos_token_ids, dtype=torch.long) if context.eos_token_ids else None


# ---- classifier-free guidance -----------------------------------------------------------------------
class GuidedBranch(UnbatchedClassifierFreeGuidanceLogitsProcessor):
    """transformers' classifier-free guidance (its `__call__`, the guidance itself), with its unconditional
    branch decoded through the engine's model interface (`StepModel`), so it runs on every model the
    engine runs. The branch is what generate() feeds: the negative prompt, or else the prompt's last token,
    then each row's newest token; its state is never reordered with the beams, as generate() never
    reorders it either. One row of the branch per row of the run: the rows the budget counts."""

    def __init__(self, guidance_scale: float, lm, unconditional_ids: torch.Tensor | None, prompt_len: int):
        super().__init__(guidance_scale, model=None, unconditional_ids=unconditional_ids)
        self.lm = lm
        self.prompt_len = prompt_len
        self.state = None

    def get_unconditional_logits(self, input_ids):
        rows = input_ids.shape[0]
        if self.state is None:
            # the branch's start, and the tokens generated since the prompt when it starts late (a replay of
            # step k, as the pipeline view does: the same ids the branch has seen by then in a run)
            first = self.unconditional_context["input_ids"]
            first = input_ids[:1, self.prompt_len - 1:self.prompt_len] if first is None else first
            first = torch.cat([first, input_ids[:1, self.prompt_len:]], dim=-1)
            logits, state = self.lm.prefill(first)
            self.state = self.lm.select_rows(state, torch.zeros(rows, dtype=torch.long, device=input_ids.device))
            return logits.expand(rows, -1)[:, None, :]
        logits, self.state = self.lm.step(input_ids[:, -1:], self.state)
        return logits[:, None, :]


def _guidance(s, context):
    if context.lm is None:
        raise InvalidSetting("guidance_scale needs the model in this process to decode its unconditional branch.")
    negative = context.texts.tensor(s.negative_prompt) if s.negative_prompt else None
    return GuidedBranch(s.guidance_scale, context.lm, negative, context.prompt_len)


GUIDED_MODES = ("greedy_search", "sample", "beam_search")  # where generate() 5.23 runs it


def _check_guidance(s, limits_: dict) -> None:
    if s.mode not in GUIDED_MODES:
        raise InvalidSetting(f"guidance_scale runs with greedy search, sampling and beam search (generate() 5.23), "
                             f"not with {s.runner.strategy}; set guidance_scale to 1.0.")
    if s.negative_prompt and s.runner.rows_needed(s) != 1:
        raise InvalidSetting("negative_prompt takes a run of one row, as generate() does (its negative prompt is "
                             "one row); use greedy, or sampling with num_return_sequences=1, or drop the negative "
                             "prompt to guide against the prompt's last token.")
    encode, context = limits_.get("encode"), limits_["context_length"]
    branch = len(encode(s.negative_prompt)) if s.negative_prompt and encode is not None else 1
    if branch + s.max_new_tokens > context:
        raise InvalidSetting(f"negative_prompt is {branch} tokens, and with max_new_tokens={s.max_new_tokens} the "
                             f"unconditional branch would pass the model's {context}-token context; shorten it.")


register(Processor(
    name="guidance", label="classifier-free guidance", does=RESHAPES, verb="reweighted by",
    knobs=("guidance_scale", "negative_prompt"), order=2, in_run=True, build=_guidance, check=_check_guidance,
    active=lambda s: s.guidance_scale != 1.0, extra_rows=lambda s: s.runner.rows_needed(s),
    in_name=lambda s: f"guidance {num(s.guidance_scale)}" + (" against a negative prompt" if s.negative_prompt else ""),
    removes=False, reorders=True, replays_on_logprobs=True,
    settings={
        "guidance_scale": knob(1.0, "classifier-free guidance: scale x (prompt's log-probs - the unconditional "
                               "branch's) + the branch's (1.0 = off; > 1 follows the prompt more)", low=0.0,
                               high=limits.MAX_GUIDANCE_SCALE, hint="1.0 turns it off", kwarg_when_default=False,
                               backends={"vllm": Runs(refuse=lambda s: NO_GUIDANCE_ON_VLLM
                                                      if s.guidance_scale != 1.0 else None)}),
        "negative_prompt": knob("", "classifier-free guidance's unconditional branch starts from this text instead "
                                "of the prompt's last token", kind="text", tokens="some",
                                chars=limits.MAX_NEGATIVE_PROMPT_CHARS, kwarg_when_default=False,
                                kwargs=lambda v, t: {"negative_prompt_ids": t.tensor(v)},
                                backends={"vllm": Runs(refuse=lambda s: NO_GUIDANCE_ON_VLLM
                                                       if s.negative_prompt else None)}),
    }))


# ---- sequence bias, bad words, min_new_tokens, length decay, suppressed tokens ----------------------
def _sequence_bias(s, context):
    return SequenceBiasLogitsProcessor(sequence_bias={context.texts.key(text): float(bias)
                                                      for text, bias in s.sequence_bias})


register(Processor(
    name="sequence_bias", label="sequence bias", does=BANS, verb="biased by", knobs=("sequence_bias",), order=5,
    in_run=True, build=_sequence_bias, active=lambda s: bool(s.sequence_bias), removes=False, reorders=True,
    in_name=lambda s: f"sequence bias on {_count(s.sequence_bias, 'text')}",
    applied=lambda s: f"sequence bias on {len(s.sequence_bias)} text(s)",
    settings={"sequence_bias": knob(
        (), "TEXT=BIAS: add BIAS to the text's last token's logit wherever the text's other tokens come just "
        "before (repeatable; the text is tokenized as typed)", kind="text_biases", tokens="some",
        items=limits.MAX_TOKEN_TEXTS, chars=limits.MAX_TOKEN_TEXT_CHARS, low=-limits.MAX_ABS_SEQUENCE_BIAS,
        high=limits.MAX_ABS_SEQUENCE_BIAS, kwarg_when_default=False,
        kwargs=lambda v, t: {"sequence_bias": {t.key(text): float(bias) for text, bias in v}},
        backends={"vllm": _VLLM_LOGIT_BIAS})}))


def _bad_words(s, context):
    words = [context.texts.ids(text) for text in s.bad_words]
    if all(len(w) == 1 and w[0] in context.eos_token_ids for w in words):
        return None  # transformers' class never bans the end of text, and would refuse an empty list
    return NoBadWordsLogitsProcessor(words, _eos(context))


register(Processor(
    name="bad_words", label="bad words", does=BANS, knobs=("bad_words",), order=40, in_run=True, build=_bad_words,
    active=lambda s: bool(s.bad_words), in_name=lambda s: _count(s.bad_words, "bad word"),
    applied=lambda s: f"{len(s.bad_words)} bad word(s) banned",
    settings={"bad_words": knob(
        (), "texts never generated: the last token of each is banned wherever its other tokens come just before "
        "(each tokenized as typed, so ' king' is the word-initial form)", kind="texts", tokens="some",
        items=limits.MAX_TOKEN_TEXTS, chars=limits.MAX_TOKEN_TEXT_CHARS, kwarg_when_default=False,
        kwargs=lambda v, t: {"bad_words_ids": [t.ids(text) for text in v]}, backends={"vllm": _VLLM_BAD_WORDS})}))


def _min_new_tokens(s, context):
    if not context.eos_token_ids:
        return None  # generate() adds it only when the model has an end-of-text token
    return MinNewTokensLengthLogitsProcessor(context.prompt_len, s.min_new_tokens, _eos(context), device=context.device)


register(Processor(
    name="min_new_tokens", label="min_new_tokens", does=BANS, verb="held back by", knobs=("min_new_tokens",),
    order=50, in_run=True, build=_min_new_tokens, active=lambda s: s.min_new_tokens > 0,
    in_name=lambda s: f"at least {s.min_new_tokens} tokens", applied=lambda s: f"no end of text before {s.min_new_tokens}",
    settings={"min_new_tokens": knob(0, "the end-of-text token is banned until this many tokens are generated "
                                     "(0 = off)", kind="int", low=0, high="context_length", hint=" (0 is off)",
                                     kwarg_when_default=False, backends={"vllm": _VLLM_MIN_TOKENS})}))


def _check_decay(s, limits_: dict) -> None:
    start, factor = s.exponential_decay_length_penalty
    steps = s.max_new_tokens - start
    if steps > 0 and factor > 1 and steps * torch.tensor(factor, dtype=torch.float64).log() > torch.tensor(
            limits.MAX_DECAY_GROWTH, dtype=torch.float64).log():
        raise InvalidSetting(
            f"exponential_decay_length_penalty=({start}, {factor:g}) grows as {factor:g} ** {steps} by the last "
            f"of {s.max_new_tokens} new tokens, past float32's range; lower the factor or start later.")


def _decay(s, context):
    if not context.eos_token_ids:
        return None
    return ExponentialDecayLengthPenalty(s.exponential_decay_length_penalty, _eos(context), context.prompt_len)


register(Processor(
    name="exponential_decay_length_penalty", label="length decay", does=BANS, verb="raised by",
    knobs=("exponential_decay_length_penalty",), order=60, in_run=True, build=_decay, check=_check_decay,
    active=lambda s: s.exponential_decay_length_penalty is not None, removes=False, reorders=True,
    in_name=lambda s: "length decay {} x {:g}".format(*s.exponential_decay_length_penalty),
    applied=lambda s: "end of text raised from step {}".format(s.exponential_decay_length_penalty[0]),
    settings={"exponential_decay_length_penalty": knob(
        None, "START,FACTOR: after START new tokens, raise the end-of-text logit by |logit| x (FACTOR ** "
        "(tokens past START) - 1)", kind="pair", part_names=("start", "factor"), kwarg_when_default=False,
        parts=(knob(0, "", kind="int", low=0, high="context_length"),
               knob(1.0, "", low=0.0, high=limits.MAX_DECAY_FACTOR, open_low=True)),
        backends={"vllm": Runs(refuse=lambda s: NO_DECAY_ON_VLLM if s.exponential_decay_length_penalty else None)})}))


register(Processor(
    name="suppress_tokens", label="suppress_tokens", does=BANS, knobs=("suppress_tokens",),
    order=70, in_run=True, active=lambda s: bool(s.suppress_tokens),
    build=lambda s, context: SuppressTokensLogitsProcessor([context.texts.one(t) for t in s.suppress_tokens],
                                                           device=context.device),
    in_name=lambda s: f"{_count(s.suppress_tokens, 'token')} suppressed",
    applied=lambda s: f"{len(s.suppress_tokens)} token(s) suppressed",
    settings={"suppress_tokens": knob(
        (), "tokens never generated, each given as its text (one token each, tokenized as typed)", kind="texts",
        tokens="one", items=limits.MAX_TOKEN_TEXTS, chars=limits.MAX_TOKEN_TEXT_CHARS, kwarg_when_default=False,
        kwargs=lambda v, t: {"suppress_tokens": [t.one(text) for text in v]},
        backends={"vllm": Runs(refuse=lambda s: NO_SUPPRESS_ON_VLLM if s.suppress_tokens else None)})}))


# ---- top-h, a warper: after temperature, before top-k -----------------------------------------------
register(Processor(
    name="top_h", label="top-h", does=CUTS, knobs=("top_h",), order=105, sampling_only=True, colour="#17becf",
    prefix_cut=True, active=lambda s: s.top_h is not None, build=lambda s, device: TopHLogitsWarper(top_h=s.top_h),
    in_name=lambda s: f"top-h {num(s.top_h)}",
    settings={"top_h": knob(None, "sampling: keep the most likely tokens while their entropy stays within top_h x "
                            "the distribution's (of its 100 most likely); off by default", kind="optional_float",
                            low=0.0, high=1.0, open_low=True, kwarg_when_default=False,
                            backends={"vllm": Runs(refuse=lambda s: NO_TOP_H_ON_VLLM if s.top_h is not None
                                                   else None)})}))
