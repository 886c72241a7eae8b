"""Decoding: the settings (declared once), the strategies (one registered class each), the step loop that
runs them in one batch (`engine`), what a run returns (`trace`) and scoring a given text. Works on ids and
numbers only: tokenization and text live in `core.playground`."""
