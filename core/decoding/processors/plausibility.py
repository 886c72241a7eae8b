"""Contrastive decoding's plausibility cut (Li et al. 2023): only tokens whose expert probability is at least
cd_alpha times the most likely token's may be chosen. The strategy (`strategies/contrastive_decoding.py`)
applies it itself, with the amateur's scores; declared here for its name in a trace, its label and colour."""

from core.decoding.processors import CUTS, Processor, register

register(Processor(
    name="plausibility", label="plausibility cut (cd_alpha)", does=CUTS, verb="cut by", knobs=("cd_alpha",),
    order=105, active=lambda s: False, build=None, colour="#17becf", prefix_cut=True))
