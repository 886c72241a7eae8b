"""Decoding Playground's computing core: models, the decoding engine, scoring and figures.

Nothing here imports streamlit; the pages and the command line both call into this package.
"""
