"""Errors that carry a message meant for the person who made the request."""


class LaunchError(Exception):
    """A request cannot go on; ``str(error)`` is shown to the client as is.

    ``status_code`` follows HTTP: 4xx when the request itself is at fault (bad spec, unknown
    ref, refused host), 5xx when binderlab or something it depends on failed.
    """

    def __init__(self, message: str, status_code: int = 400):
        super().__init__(message)
        self.status_code = status_code
