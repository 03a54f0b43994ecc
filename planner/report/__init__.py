"""Plain dicts and text for people and programs; nothing here prints or writes files."""
