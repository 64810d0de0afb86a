"""The one exception type the CLIs turn into a one-line message and a non-zero exit code."""


class KitError(Exception):
    """A user-facing error: the message names the thing that is wrong and how to fix it."""
