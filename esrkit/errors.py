"""The one exception type the CLIs turn into a one-line message and a non-zero exit code."""


class KitError(Exception):
    """A user-facing error: the message names the thing that is wrong and how to fix it."""


class NonFiniteOutput(KitError):
    """The model gave NaN or Inf on a real image: broken weights or a numerically unstable network."""


def first_line(exc: BaseException, with_type: bool = True) -> str:
    """An exception as one line: ``Type: the first line of its message`` (user code raises anything)."""
    text = str(exc).strip()
    message = text.splitlines()[0] if text else "(no message)"
    return f"{type(exc).__name__}: {message}" if with_type else message
