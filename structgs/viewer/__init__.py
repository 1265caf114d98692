"""The browser editor (``structgs view``): viser over an :class:`~structgs.edit.session.EditSession`."""
