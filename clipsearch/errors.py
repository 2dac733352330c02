"""The root of the errors clipsearch reports to users as a message, not a traceback."""


class ClipsearchError(Exception):
    """An error whose message tells the user what to fix."""
