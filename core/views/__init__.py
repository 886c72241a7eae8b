"""What only the app and the exports use: figures and hover cards, URL state and the line-up syntax
(`share`), recipes and one-file HTML pages, and the model internals the pages draw. Nothing in
`core.decoding` or `core.models` imports from here."""
