"""The one exception type for errors a user can cause and fix."""


class BioslicerError(Exception):
    """A user error: bad input, impossible parameters, a program over the limits.

    The message is one line that says what is wrong and how to fix it. The CLI prints it
    as ``error: <message>`` and exits 1; the service answers it with HTTP 4xx. Anything else
    raised inside bioslicer is a bug and keeps its traceback.
    """
