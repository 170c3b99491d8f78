"""User-facing errors: the CLI prints their message on one line and exits non-zero."""


class RarEdgeError(Exception):
    """An error caused by the user's input; its message says what was wrong and what to do."""
