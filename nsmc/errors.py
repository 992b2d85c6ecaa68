"""One exception type for problems a user can fix; entry points print its message, not a traceback."""


class UserError(RuntimeError):
    """Something about the input (a path, a flag, the network) that the message says how to fix."""
