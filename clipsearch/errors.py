"""The root of the errors clipsearch reports to users as a message, not a traceback."""


class ClipsearchError(Exception):
    """An error whose message says what went wrong; `hint`, when there is one, says what to
    do about it (the flag, the command, the path to try)."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.hint = hint


class Interrupted(ClipsearchError):
    """A job stopped on Ctrl-C or SIGTERM, at a safe point; the hint says how to resume."""
