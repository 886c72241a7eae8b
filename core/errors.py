"""The one exception type a user ever sees: its message is a single sentence that says what to do."""


class PlaygroundError(Exception):
    """A problem with the user's input or environment, explained in one sentence (no traceback needed)."""


class InvalidSetting(PlaygroundError):
    """A decoding setting or prompt that cannot be run as given."""


class ModelUnavailable(PlaygroundError):
    """A model that is unknown, or whose weights cannot be had on this machine."""


def quote(value, limit: int = 60) -> str:
    """A stranger's value as a short, quoted literal: cut, and with every control character escaped."""
    text = str(value)
    # cut after escaping: one character can take 10 to show (an unassigned code point: \U000105a2)
    shown = min(len(text), limit)
    while shown > 0 and len(repr(text[:shown])) > limit + 2:
        shown -= 1
    return repr(text[:shown]) + ("…" if len(text) > shown else "")
