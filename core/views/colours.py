"""The colours of the views: tokens by probability (viridis on a log scale, with a text colour that
contrasts), runs, strategies and the beam tree's node states."""

from __future__ import annotations

import math

STATUS_COLOURS = {"kept": "#1f77b4", "finished": "#2ca02c", "pruned": "#b0b0b0"}
BEST_COLOUR = "#d62728"
RUN_COLOURS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
               "#bcbd22", "#17becf"]
STRATEGY_SYMBOLS = {"greedy": "circle", "beam": "square", "sample": "diamond"}

# viridis on log10(p) from 1e-4 (dark purple: improbable) to 1 (yellow: certain)
COLOURSCALE = ["#440154", "#482878", "#3e4989", "#31688e", "#26828e", "#1f9e89", "#35b779", "#6ece58",
               "#b5de2b", "#fde725"]
LOG10_FLOOR = -4.0
LEGEND_TICKS = [(1e-4, "0.01%"), (1e-3, "0.1%"), (1e-2, "1%"), (1e-1, "10%"), (1.0, "100%")]
UNKNOWN_COLOUR = ("#e0e0e0", "#111111")


def level(prob: float) -> float:
    """Where a probability sits on the colour scale: 0 at p <= 1e-4, 1 at p = 1 (log scale)."""
    if not prob > 0:
        return 0.0
    return min(1.0, max(0.0, (math.log10(prob) - LOG10_FLOOR) / -LOG10_FLOOR))


def _rgb(hex_colour: str) -> tuple[int, int, int]:
    return tuple(int(hex_colour[i:i + 2], 16) for i in (1, 3, 5))


def _luminance(rgb) -> float:
    def lin(c):
        c = c / 255
        return c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4
    r, g, b = (lin(c) for c in rgb)
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def probability_colour(prob: float) -> tuple[str, str]:
    """(background, text colour) for a token of probability `prob`: the text colour is whichever of
    black or white contrasts more with the background."""
    x = level(prob) * (len(COLOURSCALE) - 1)
    i = min(int(x), len(COLOURSCALE) - 2)
    a, b = _rgb(COLOURSCALE[i]), _rgb(COLOURSCALE[i + 1])
    rgb = tuple(round(ca + (cb - ca) * (x - i)) for ca, cb in zip(a, b))
    lum = _luminance(rgb)
    text = "#111111" if (lum + 0.05) / 0.05 >= 1.05 / (lum + 0.05) else "#ffffff"
    return "rgb({},{},{})".format(*rgb), text
