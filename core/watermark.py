"""Detecting the green-list watermark (Kirchenbauer et al. 2023) in any token ids, and trying to break it.

`detect_ids` gives transformers' `WatermarkDetector`'s figures (tokens scored, green tokens, green
fraction, z-score, p-value, prediction at a threshold) and, per token, which list it fell in and the
z-score and p-value as the text grows. The green lists are drawn by transformers' own
`WatermarkLogitsProcessor`, built from the same `WatermarkingConfig` the marked run used, so a detection
here is the detector's (tests/test_watermark.py holds the two together on the same ids).

A text too short to judge is said to be, not guessed: below `MIN_TOKENS_TO_JUDGE` scored tokens the
normal approximation behind the z-score does not hold, and a text whose every token being green would
still not reach the threshold cannot be told apart from unmarked text at all.

The rest serves the Watermark lab: a marked run's tokens with the bias each got at its step, the
detection of a text after a share of its tokens was edited at random (seeded) or after another model
continued it, and the false-positive rate on human text.
"""

from __future__ import annotations

import math
import random
from collections import OrderedDict
from dataclasses import asdict, dataclass, field

import torch

from core.decoding.processors import PROCESSORS, build_processors
from core.decoding.processors.watermark import WATERMARK_SECONDS, LazyWatermark, green_list_seconds, watermarking_config
from core.decoding.settings import DecodeSettings
from core.errors import InvalidSetting

DEFAULT_THRESHOLD = 4.0  # the paper's z = 4: about 3 false positives in 100,000 unmarked texts
MIN_THRESHOLD, MAX_THRESHOLD = 0.0, 20.0  # past 20 no text of the app's length could be called marked
MIN_TOKENS_TO_JUDGE = 16  # with fewer scored tokens the binomial count is too coarse for a normal z-score
GREEN_LIST_CACHE_BYTES = 64 * 2**20  # lefthash green lists kept as masks, one per token before
EDIT_SHARES = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6)  # the lab's "try to break it" curve
MAX_SHARE_POINTS = 11
MAX_DETECT_TOKENS = 4_096  # a text's tokens read at once: a green list each, about 0.1-0.5 ms apiece


@dataclass
class TokenMark:
    """One token of a text: whether the detector scores it, which list it fell in, and the figures so far."""
    index: int
    id: int
    token: str
    scored: bool  # False for the first tokens, whose green list is seeded by tokens the text does not hold
    green: bool | None  # the list it fell in: for a marked run at its step (the prompt included); else None if unscored
    bias: float | None = None  # what the watermark added to its logit at its step (a marked run only)
    z: float | None = None  # the z-score over the scored tokens up to this one
    p: float | None = None


@dataclass
class Detection:
    """`WatermarkDetector`'s figures for one text, and why there is no verdict when there is none."""
    tokens_scored: int
    green_tokens: int
    green_fraction: float | None
    z_score: float | None
    p_value: float | None
    threshold: float
    prediction: bool | None  # None: too short to judge (`verdict` says why)
    verdict: str
    tokens: list[TokenMark] = field(default_factory=list)
    watermarking_config: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


def check_threshold(threshold) -> float:
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not math.isfinite(threshold) \
            or not MIN_THRESHOLD <= threshold <= MAX_THRESHOLD:
        raise InvalidSetting(f"The z-score threshold must be a number from {MIN_THRESHOLD:g} to {MAX_THRESHOLD:g}, "
                             f"got {threshold!r}; the paper's is {DEFAULT_THRESHOLD:g}.")
    return float(threshold)


class GreenLists:
    """Which tokens are green after a context, as transformers' `WatermarkLogitsProcessor` draws them (its
    own `_get_greenlist_ids`, on the device the run was decoded on: a CUDA generator draws other lists)."""

    def __init__(self, s: DecodeSettings, vocab_size: int, device="cpu"):
        self.processor = watermarking_config(s).construct_processor(vocab_size, device)
        self.device = device
        self.vocab_size = vocab_size
        self.width = s.context_width
        self.selfhash = s.seeding_scheme == "selfhash"
        self.ratio = s.greenlist_ratio
        # under lefthash transformers seeds the list with the last token alone (`set_seed`), so one mask per
        # token serves every context ending in it; selfhash seeds with the whole window and the candidate
        self._masks: OrderedDict[int, torch.Tensor] = OrderedDict()
        self._max_masks = max(64, GREEN_LIST_CACHE_BYTES // max(1, vocab_size))
        self._windows: OrderedDict[tuple, bool] = OrderedDict()

    def _list(self, window: tuple[int, ...]) -> torch.Tensor:
        return self.processor._get_greenlist_ids(torch.tensor(window, dtype=torch.long, device=self.device))

    def is_green(self, context: tuple[int, ...], target: int) -> bool:
        """Whether `target` is green after `context` (the tokens before it; at least the context width)."""
        if self.selfhash:
            window = (tuple(context) + (target,))[-self.width:]
            if window not in self._windows:
                self._windows[window] = bool((self._list(window) == target).any())
                if len(self._windows) > 100_000:
                    self._windows.popitem(last=False)
            return self._windows[window]
        last = context[-1]
        mask = self._masks.get(last)
        if mask is None:
            mask = torch.zeros(self.vocab_size, dtype=torch.bool)
            mask[self._list(tuple(context[-self.width:])).cpu()] = True
            self._masks[last] = mask
            if len(self._masks) > self._max_masks:
                self._masks.popitem(last=False)
        else:
            self._masks.move_to_end(last)
        return bool(mask[target])

    def missing(self, ids: list[int], before: list[int] = ()) -> set:
        """The green lists reading `ids` (after `before`) would draw that are not drawn yet."""
        seq = list(before)[-self.width:] + list(ids)
        if self.selfhash:
            return {tuple(seq[max(0, j - self.width + 1):j + 1]) for j in range(len(seq))} - self._windows.keys()
        return set(seq[:-1]) - self._masks.keys()

    def afford(self, lists: int, what: str) -> None:
        """Refuse, in one sentence, reading that would draw more green lists than a request may pay for."""
        seconds = lists * green_list_seconds(self.vocab_size)
        if seconds > WATERMARK_SECONDS:
            raise InvalidSetting(
                f"{what} draws {lists:,} green lists of a {self.vocab_size:,}-token vocabulary, about {seconds:.0f} s "
                f"of work (a request may take {WATERMARK_SECONDS:g} s); use a shorter text or a model with a "
                "smaller vocabulary.")

    @property
    def unscored(self) -> int:
        """How many first tokens of a text the detector cannot score: those whose seeding tokens are not in it
        (its n-grams are context_width + 1 tokens long, the scored one included; selfhash's one shorter)."""
        return self.width - int(self.selfhash)


def z_score(green: int, scored: int, ratio: float) -> float:
    """The detector's one-proportion z-test: green tokens against the ratio expected of unmarked text."""
    return (green - ratio * scored) / math.sqrt(scored * ratio * (1 - ratio))


def p_value(z: float) -> float:
    return 0.5 * math.erfc(z / math.sqrt(2))


def judge(scored: int, z: float | None, ratio: float, threshold: float) -> tuple[bool | None, str]:
    """(prediction, one sentence). No verdict where the text is too short to tell."""
    if scored == 0:
        return None, "Too short to judge: no token can be scored (the detector needs more tokens than the context width)."
    best = math.sqrt(scored * (1 - ratio) / ratio)  # the z-score if every scored token were green
    if scored < MIN_TOKENS_TO_JUDGE or best <= threshold:
        why = (f"even if all {scored} were green the z-score would be {best:.2f}, not above {threshold:g}"
               if best <= threshold else f"at least {MIN_TOKENS_TO_JUDGE} are needed for a z-score to mean anything")
        return None, f"Too short to judge: {scored} token(s) scored, and {why}."
    if z > threshold:
        return True, f"Watermarked: z = {z:.2f} is above the threshold {threshold:g} (p = {p_value(z):.2g})."
    return False, f"No watermark found: z = {z:.2f} is not above the threshold {threshold:g}."


def detect_ids(ids: list[int], s: DecodeSettings, *, vocab_size: int, bos_token_id: int | None = None,
               threshold: float = DEFAULT_THRESHOLD, device="cpu", token_text=str, lists: GreenLists | None = None,
               context: list[int] | None = None, biases: list[float] | None = None) -> Detection:
    """The detector's figures for `ids` (a leading `bos_token_id` is dropped, as the detector drops it), with
    the z-score and p-value after each scored token.

    `context`: the tokens before `ids` (a marked run's prompt), which the detector never sees but which
    seeded the first tokens' green lists: with it, every token gets its colour at its step, while the
    figures stay the detector's, over `ids` alone. `biases`: what each token got at its step."""
    threshold = check_threshold(threshold)
    ids = [int(i) for i in ids]
    before = [int(i) for i in (context or [])]
    if ids and bos_token_id is not None and ids[0] == bos_token_id:
        ids, before, biases = ids[1:], before + ids[:1], biases[1:] if biases is not None else None
    lists = lists or GreenLists(s, vocab_size, device)
    lists.afford(len(lists.missing(ids, before)), "Reading this text")
    width = s.context_width
    marks, green, scored = [], 0, 0
    for j, token in enumerate(ids):
        is_scored = j >= lists.unscored and len(ids) > width  # the detector refuses a text no longer than the width
        seen = before + ids[:j]
        # its list: the detector's for a scored token; for one before the text's first window, the list it got
        # at its step, where the tokens before the text are known (transformers skips seeding on fewer than width)
        colour = lists.is_green(tuple(seen[-width:]), token) if is_scored or len(seen) >= width else None
        mark = TokenMark(j, token, token_text(token), is_scored, colour,
                         biases[j] if biases is not None and j < len(biases) else None)
        if is_scored:
            scored += 1
            green += int(bool(colour))
            mark.z = z_score(green, scored, s.greenlist_ratio)
            mark.p = p_value(mark.z)
        marks.append(mark)
    z = z_score(green, scored, s.greenlist_ratio) if scored else None
    prediction, verdict = judge(scored, z, s.greenlist_ratio, threshold)
    return Detection(scored, green, green / scored if scored else None, z, p_value(z) if z is not None else None,
                     threshold, prediction, verdict, marks, watermarking_config(s).to_dict())


def detect_text(pg, text: str, s: DecodeSettings, threshold: float = DEFAULT_THRESHOLD) -> Detection:
    """Any text, tokenized by the model's tokenizer, as the detector would see it."""
    if not isinstance(text, str) or not text.strip():
        raise InvalidSetting("The text is empty; paste the text to look for a watermark in.")
    if len(text) > 200_000:
        raise InvalidSetting(f"The text has {len(text):,} characters; at most 200,000 are accepted.")
    ids = pg.tokenizer.encode(text)
    if not ids:
        raise InvalidSetting("The text tokenizes to nothing; paste some text to look for a watermark in.")
    return detect_for(pg, ids, s, threshold)


def detect_for(pg, ids: list[int], s: DecodeSettings, threshold: float = DEFAULT_THRESHOLD, **kwargs) -> Detection:
    """`detect_ids` with the model's vocabulary, BOS token, device and token texts."""
    check_watermark(pg, s)
    if len(ids) > MAX_DETECT_TOKENS:
        raise InvalidSetting(f"The text has {len(ids):,} tokens; the detector reads at most {MAX_DETECT_TOKENS:,} "
                             "at once, so paste a shorter part of it.")
    config = getattr(pg.model, "config", None)
    bos = getattr(config, "bos_token_id", None) if config is not None else getattr(pg.tokenizer, "bos_token_id", None)
    return detect_ids(ids, s, vocab_size=pg.facts.vocab_size, bos_token_id=bos, threshold=threshold,
                      device=_device(pg), token_text=pg.token_text, **kwargs)


def check_watermark(pg, s: DecodeSettings) -> None:
    """The watermark's settings, checked as a run's are (the detector takes any of them, marked or not)."""
    pg.check(s.replace(watermark=True))


def _device(pg) -> str:
    return pg.device if not getattr(pg, "remote", False) else "cpu"


# a marked run --------------------------------------------------------------------------------------------
def run_biases(pg, s: DecodeSettings, prompt_ids: list[int], ids: list[int]) -> list[float]:
    """What the watermark added to each chosen token's score at its step, replayed exactly as the run applied
    it: the model's scores at every position in one forward pass, the run's processors before the
    watermark, then transformers' processor itself (selfhash biases only the green ones among the 40 most
    likely candidates, so a green token is not always a favoured one)."""
    if not ids:
        return []
    seq = torch.tensor([prompt_ids + ids], device=pg.lm.device)
    logits = pg.lm.all_logits(seq)[0, len(prompt_ids) - 1:-1].float()  # (len(ids), V): the scores at each step
    before = [proc for name, proc in build_processors(s, pg.lm.device) if name != "watermark"]
    mark = LazyWatermark(s, pg.lm.device)
    out = []
    for j, token in enumerate(ids):
        context = seq[:, :len(prompt_ids) + j]
        scores = logits[j:j + 1]
        if s.is_beam:  # beam search processes log-probs, greedy and sampling the logits
            scores = torch.log_softmax(scores, -1)
        for proc in before:
            scores = proc(context, scores)
        shift = mark(context, scores) - scores
        value = shift[0, token].item()
        out.append(0.0 if math.isnan(value) else value)  # a -inf score shifted stays -inf: no bias told
    return out


def mark_run(pg, s: DecodeSettings, prompt_ids: list[int], ids: list[int],
             threshold: float = DEFAULT_THRESHOLD) -> Detection:
    """A marked run's generated tokens: the detector's figures over them alone (the prompt removed, as its
    documentation advises), each token's list at its step and the bias it got."""
    biases = run_biases(pg, s, prompt_ids, ids) if not getattr(pg, "remote", False) else None
    return detect_for(pg, ids, s, threshold, context=prompt_ids, biases=biases)


# trying to break it --------------------------------------------------------------------------------------
def check_shares(shares) -> list[float]:
    shares = list(shares)
    if not shares or len(shares) > MAX_SHARE_POINTS or any(
            isinstance(x, bool) or not isinstance(x, (int, float)) or not 0 <= x <= 1 for x in shares):
        raise InvalidSetting(f"The shares edited must be 1 to {MAX_SHARE_POINTS} numbers from 0 to 1, got {shares!r}.")
    return [float(x) for x in shares]


def edit_tokens(ids: list[int], share: float, seed: int, vocab_size: int) -> tuple[list[int], list[int]]:
    """`ids` with round(share x len) positions, drawn at random (seeded), each replaced by another random
    token: the paper's "T5 span attack" at its crudest. Returns the edited ids and the positions edited."""
    rng = random.Random(f"{seed}:{share}:{len(ids)}")
    positions = sorted(rng.sample(range(len(ids)), round(share * len(ids))))
    edited = list(ids)
    for i in positions:
        new = rng.randrange(vocab_size - 1)
        edited[i] = new if new < ids[i] else new + 1  # never the token it replaces
    return edited, positions


@dataclass
class AttackPoint:
    share: float  # of the text's tokens edited, or written by the other model
    tokens: int
    z_score: float | None
    p_value: float | None
    green_fraction: float | None
    prediction: bool | None
    text: str = ""


def _point(share: float, d: Detection, text: str = "") -> AttackPoint:
    return AttackPoint(share, len(d.tokens), d.z_score, d.p_value, d.green_fraction, d.prediction, text)


def edit_curve(pg, ids: list[int], s: DecodeSettings, *, shares=EDIT_SHARES, seed: int = 0,
               threshold: float = DEFAULT_THRESHOLD) -> list[AttackPoint]:
    """Detection after each share of the tokens was replaced at random (the same seed for every share)."""
    lists = GreenLists(s, pg.facts.vocab_size, _device(pg))
    out = []
    for share in check_shares(shares):
        edited, _ = edit_tokens(ids, share, seed, pg.facts.vocab_size)
        out.append(_point(share, detect_for(pg, edited, s, threshold, lists=lists), pg.text(edited)))
    return out


def continuation_curve(pg, other, prompt: str, ids: list[int], s: DecodeSettings, *, shares=EDIT_SHARES,
                       threshold: float = DEFAULT_THRESHOLD, compare=None) -> list[AttackPoint]:
    """Detection after the other model rewrote the end of the marked text: for each share, the marked text's
    first (1 - share) of tokens kept and the other model's greedy continuation of prompt + them in place of
    the rest, as text, read back by the marking model's tokenizer and cut to the marked length.
    `compare(pg, prompt, runs)` decodes (the app queues it); by default `other.compare`."""
    compare = compare or (lambda model, text, runs: model.compare(text, runs))
    lists = GreenLists(s, pg.facts.vocab_size, _device(pg))
    out = []
    for share in check_shares(shares):
        keep = len(ids) - round(share * len(ids))
        kept_text = pg.text(ids[:keep])
        text = kept_text
        if keep < len(ids):
            run = DecodeSettings("greedy", max_new_tokens=max(1, round(share * len(ids)) + 8))
            text += compare(other, prompt + kept_text, [run]).runs[0].best.text
        # the untouched text is read as it was marked: decoding and encoding again may split it otherwise
        new_ids = list(ids) if keep == len(ids) else pg.tokenizer.encode(text)[:len(ids)]
        out.append(_point(share, detect_for(pg, new_ids, s, threshold, lists=lists), text))
    return out


# false positives on human text ---------------------------------------------------------------------------
@dataclass
class FalsePositives:
    threshold: float
    tokens: int  # each passage cut to this many tokens
    z_scores: list[float | None]  # one per passage; None: too short to judge
    judged: int
    flagged: int

    @property
    def rate(self) -> float | None:
        return self.flagged / self.judged if self.judged else None

    def at(self, threshold: float) -> "FalsePositives":
        """The same z-scores against another threshold (nothing recomputed)."""
        threshold = check_threshold(threshold)
        flagged = sum(1 for z in self.z_scores if z is not None and z > threshold)
        return FalsePositives(threshold, self.tokens, self.z_scores, self.judged, flagged)


def false_positives(pg, passages, s: DecodeSettings, *, tokens: int,
                    threshold: float = DEFAULT_THRESHOLD) -> FalsePositives:
    """How many human passages (prompt and continuation together, cut to `tokens` tokens) the detector calls
    marked. None of them was ever marked, so each one flagged is a false positive."""
    lists = GreenLists(s, pg.facts.vocab_size, _device(pg))
    texts = [pg.tokenizer.encode(p.prompt + p.continuation)[:tokens] for p in passages]
    lists.afford(len(set().union(*(lists.missing(ids) for ids in texts))), f"Reading the {len(texts)} human passages")
    zs = []
    for ids in texts:
        d = detect_for(pg, ids, s, threshold, lists=lists)
        zs.append(d.z_score if d.prediction is not None else None)
    judged = sum(1 for z in zs if z is not None)
    return FalsePositives(threshold, tokens, zs, judged, 0).at(threshold)


def marked(runs: list[DecodeSettings], s: DecodeSettings) -> list[DecodeSettings]:
    """The same runs with the watermark of `s`."""
    return [r.replace(watermark=True, **watermark_fields(s)) for r in runs]


def watermark_fields(s: DecodeSettings) -> dict:
    return {name: getattr(s, name) for name in PROCESSORS["watermark"].knobs if name != "watermark"}
