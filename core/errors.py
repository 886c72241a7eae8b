"""The one exception type a user ever sees: its message is a single sentence that says what to do."""


class PlaygroundError(Exception):
    """A problem with the user's input or environment, explained in one sentence (no traceback needed)."""


class InvalidSetting(PlaygroundError):
    """A decoding setting or prompt that cannot be run as given."""


class ModelUnavailable(PlaygroundError):
    """A model that is unknown, or whose weights cannot be had on this machine."""
