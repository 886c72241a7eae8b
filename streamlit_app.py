"""Decoding Playground: the entry file. It only registers the pages; each page draws the shared sidebar
(with the page links) itself, so every page also runs on its own."""

import streamlit as st

from ui import PAGES

st.navigation([st.Page(path, title=title, icon=icon, url_path=url, default=(i == 0))
               for i, (path, title, icon, url) in enumerate(PAGES)], position="hidden").run()
