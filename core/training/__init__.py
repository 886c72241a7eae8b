"""Training the shipped models and writing their cards: above the models and the playground, since a card
shows sample continuations decoded by the engine. Run as `python -m core.training` (scripts/train.sh)."""
