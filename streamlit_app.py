"""Decoding Playground: the entry file. It only registers the pages; each page draws the shared sidebar
(with the page links) itself, so every page also runs on its own.

The first page is served twice: at `/` (the default) and at its own address, `/compare`, as a hidden
page, so the links the app builds for every page load with no "page not found" dialog."""

import streamlit as st

from ui import PAGES

path, title, icon, url = PAGES[0]
# the default page still reserves its url_path, though it is served at the root: give it another
pages = [st.Page(path, title=title, icon=icon, url_path="home", default=True)]
pages += [st.Page(path, title=title, icon=icon, url_path=url, visibility=("hidden" if i == 0 else "visible"))
          for i, (path, title, icon, url) in enumerate(PAGES)]
st.navigation(pages, position="hidden").run()
