"""Sampling's warpers, in generate()'s order; generate() applies them only when it samples (their
settings are declared by `strategies/single.py`'s Sampling)."""

from transformers.generation.logits_process import (
    EpsilonLogitsWarper,
    EtaLogitsWarper,
    MinPLogitsWarper,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
    TypicalLogitsWarper,
)

from core.decoding.processors import CUTS, RESHAPES, Processor, register

register(Processor(
    name="temperature", label="temperature", does=RESHAPES, knobs=("temperature",), order=100, sampling_only=True,
    active=lambda s: s.temperature != 1.0, build=lambda s, device: TemperatureLogitsWarper(s.temperature)))

register(Processor(
    name="top_k", label="top-k", does=CUTS, knobs=("top_k",), order=110, sampling_only=True, colour="#d62728",
    prefix_cut=True, active=lambda s: s.top_k != 0,
    build=lambda s, device: TopKLogitsWarper(top_k=s.top_k, min_tokens_to_keep=1)))

register(Processor(
    name="top_p", label="top-p", does=CUTS, knobs=("top_p",), order=120, sampling_only=True, colour="#2ca02c",
    prefix_cut=True, mass_cut=True, active=lambda s: s.top_p < 1.0,
    build=lambda s, device: TopPLogitsWarper(top_p=s.top_p, min_tokens_to_keep=1)))

register(Processor(
    name="min_p", label="min-p", does=CUTS, knobs=("min_p",), order=130, sampling_only=True, colour="#9467bd",
    prefix_cut=True, active=lambda s: s.min_p is not None,
    build=lambda s, device: MinPLogitsWarper(min_p=s.min_p, min_tokens_to_keep=1)))

register(Processor(  # keeps the tokens nearest the entropy, not the most likely ones: no prefix of the order
    name="typical_p", label="typical-p", does=CUTS, knobs=("typical_p",), order=140, sampling_only=True,
    colour="#ff7f0e", active=lambda s: s.typical_p < 1.0,
    build=lambda s, device: TypicalLogitsWarper(mass=s.typical_p, min_tokens_to_keep=1)))

register(Processor(
    name="epsilon", label="epsilon", does=CUTS, knobs=("epsilon_cutoff",), order=150, sampling_only=True,
    colour="#8c564b", prefix_cut=True, active=lambda s: 0.0 < s.epsilon_cutoff < 1.0,
    build=lambda s, device: EpsilonLogitsWarper(epsilon=s.epsilon_cutoff, min_tokens_to_keep=1)))

register(Processor(
    name="eta", label="eta", does=CUTS, knobs=("eta_cutoff",), order=160, sampling_only=True, colour="#e377c2",
    prefix_cut=True, active=lambda s: 0.0 < s.eta_cutoff < 1.0,
    build=lambda s, device: EtaLogitsWarper(epsilon=s.eta_cutoff, min_tokens_to_keep=1, device=device)))
