"""The one exception type for the user's mistakes, so that tools can tell them from bugs.

``kd-env`` reports a ``UserError`` in one line and exits 2; any other exception is a bug and shows
its traceback. It subclasses ``ValueError``: code that caught the ``ValueError`` raised for bad input
before this type existed still catches it.
"""


class UserError(ValueError):
    """Bad input (an argument, a file, a folder) that the user can fix; the message says how."""
