"""The green-list watermark of Kirchenbauer et al. (2023), "A Watermark for Large Language Models", as
transformers builds it for `generate(watermarking_config=WatermarkingConfig(...))`: at every step a
pseudo-random share of the vocabulary (`greenlist_ratio`), seeded by the key and the tokens before it,
gets `watermark_bias` added to its logits. generate() applies it after every other processor, warpers
included, in every mode; so does this declaration (`order` past the warpers, not `sampling_only`).

Its settings are not generate() keywords of their own: they travel as one `WatermarkingConfig`
(`generate_kwargs`). `core.watermark` holds the detector that counts the green tokens."""

from __future__ import annotations

from transformers import WatermarkingConfig

from core.decoding.knobs import ANY_BACKEND, Runs, knob, num
from core.decoding.processors import RESHAPES, Processor, register
from core.errors import InvalidSetting

SEEDING_SCHEMES = ("lefthash", "selfhash")  # transformers' two (the paper's Algorithms 2 and 3)
# 20 nats is more than the spread of a step's likely tokens on every model here: past it the green list
# is a hard rule rather than a bias, and the paper's own range is 0.5 to 10
MAX_WATERMARK_BIAS = 20.0
MAX_HASHING_KEY = 2**32 - 1  # as every seed here; selfhash multiplies the key into int64 arithmetic
# the paper's follow-up (Kirchenbauer et al. 2023b) tries context widths up to 8; a detector needs more
# tokens than the width before it can score any, so wider only starves short texts
MAX_CONTEXT_WIDTH = 16
# the sub-settings change nothing while the watermark is off, so any backend takes them at any value; the
# watermark itself declares no backend, so vLLM refuses a marked run by its name
_HARMLESS_ALONE = {ANY_BACKEND: Runs()}

SETTINGS = {
    "watermark": knob(False, "mark the run with transformers' green-list watermark (Kirchenbauer et al. 2023)",
                      kind="bool", keyword=False),
    "watermark_bias": knob(2.0, "watermark: added to every green token's logit (WatermarkingConfig's bias)",
                           low=0.0, high=MAX_WATERMARK_BIAS, keyword=False, backends=_HARMLESS_ALONE,
                           hint="the paper uses 0.5 to 10; 2.0 is transformers' default"),
    "greenlist_ratio": knob(0.25, "watermark: the share of the vocabulary that is green at each step", low=0.0,
                            high=1.0, open_low=True, open_high=True, keyword=False, backends=_HARMLESS_ALONE,
                            hint="0.25 is transformers' default"),
    "hashing_key": knob(15485863, "watermark: the secret key that seeds every green list (detection needs it)",
                        kind="int", low=0, high=MAX_HASHING_KEY, keyword=False, backends=_HARMLESS_ALONE),
    "seeding_scheme": knob("lefthash", "watermark: lefthash (the green list follows the token before) or selfhash "
                           "(it also follows the candidate itself)", kind="choice", choices=SEEDING_SCHEMES,
                           keyword=False, backends=_HARMLESS_ALONE),
    "context_width": knob(1, "watermark: how many tokens before seed the green list", kind="int", low=1,
                          high=MAX_CONTEXT_WIDTH, keyword=False, backends=_HARMLESS_ALONE),
}


# Drawing a green list is a seeded torch.randperm of the whole vocabulary, which transformers does once per
# row and step (selfhash: once for each of the 40 most likely candidates). On 2 CPU cores torch takes about
# 0.3 ms up to 2^15 tokens and 28 ms past it (another algorithm): on GPT-2's 50,257 tokens a marked greedy
# run of 40 tokens pays 1.1 s, and under selfhash 45 s, in generate() as here.
SELFHASH_CANDIDATES = 40  # transformers' `_score_rejection_sampling` looks at this many
WATERMARK_SECONDS = 30.0  # what one run's green lists may cost, as the request budget bounds a request


def green_list_seconds(vocab_size: int) -> float:
    """About what drawing one green list of this vocabulary costs on the CPU (measured; see above)."""
    return 0.0005 if vocab_size <= 2**15 else 0.03


def _check_cost(s, limits: dict) -> None:
    vocab = limits["vocab_size"]
    lists = s.rows * s.max_new_tokens * (SELFHASH_CANDIDATES if s.seeding_scheme == "selfhash" else 1)
    seconds = lists * green_list_seconds(vocab)
    if seconds > WATERMARK_SECONDS:
        most = max(1, int(WATERMARK_SECONDS / (green_list_seconds(vocab) * lists / s.max_new_tokens)))
        raise InvalidSetting(
            f"This watermark draws {lists:,} green lists of a {vocab:,}-token vocabulary (one per row and step"
            f"{', 40 under selfhash' if s.seeding_scheme == 'selfhash' else ''}), about {seconds:.0f} s of work; "
            f"use at most {most} new tokens, fewer rows, lefthash or a model with a smaller vocabulary.")


def watermarking_config(s) -> WatermarkingConfig:
    """transformers' config for the run's watermark: what generate() and `WatermarkDetector` take."""
    return WatermarkingConfig(greenlist_ratio=s.greenlist_ratio, bias=s.watermark_bias, hashing_key=s.hashing_key,
                              seeding_scheme=s.seeding_scheme, context_width=s.context_width)


class LazyWatermark:
    """transformers' `WatermarkLogitsProcessor`, made at its first call: its green lists are permutations of
    the whole vocabulary, whose size generate() reads from the model's config and this builder learns from
    the width of the scores (the same number: the logits are as wide as the vocabulary)."""

    def __init__(self, s, device):
        self.config = watermarking_config(s)
        self.device = device
        self.processor = None

    def __call__(self, input_ids, scores):
        if self.processor is None:
            self.processor = self.config.construct_processor(scores.shape[-1], self.device)
        return self.processor(input_ids, scores)


def _in_name(s) -> str:
    extra = [f"key {s.hashing_key}"] if s.hashing_key != SETTINGS["hashing_key"].default else []
    extra += [f"green {num(s.greenlist_ratio)}"] if s.greenlist_ratio != SETTINGS["greenlist_ratio"].default else []
    extra += [s.seeding_scheme] if s.seeding_scheme != SETTINGS["seeding_scheme"].default else []
    extra += [f"width {s.context_width}"] if s.context_width != SETTINGS["context_width"].default else []
    return f"watermark {num(s.watermark_bias)}" + (f" ({', '.join(extra)})" if extra else "")


register(Processor(
    name="watermark", label="watermark", does=RESHAPES, verb="favoured by",
    knobs=tuple(SETTINGS), settings=SETTINGS, order=170, colour="#bcbd22",
    active=lambda s: s.watermark is True, build=lambda s, device: LazyWatermark(s, device),
    applied=lambda s: f"green list +{num(s.watermark_bias)}", in_name=_in_name, removes=False, reorders=True,
    generate_kwargs=lambda s: {"watermarking_config": watermarking_config(s)}, check=_check_cost))
