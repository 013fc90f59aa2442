"""Errors that carry a message meant for the person who made the request, and its owner.

The rule everywhere (HTTP answers, the event stream's ``failed.status_code``, the launch
log, metrics, the CLI's exit): 4xx when the request or the repository is at fault, 5xx when
binderlab or something it depends on failed. Only a 5xx is a defect to look into.
"""


class LaunchError(Exception):
    """A request cannot go on; ``str(error)`` is shown to the client as is.

    ``status_code`` follows HTTP: 4xx when the request itself is at fault (bad spec, unknown
    ref, refused host), 5xx when binderlab or something it depends on failed.
    """

    fields: dict = {}  # extra fields of the failed event (a limit's renews_at, retry_after)

    def __init__(self, message: str, status_code: int = 400):
        super().__init__(message)
        self.status_code = status_code

    @property
    def ours(self) -> bool:
        """True for our defect or outage (5xx), False for the request's own fault."""
        return self.status_code >= 500


class RepositoryError(LaunchError):
    """The repository's content cannot become an image: repo2docker refuses its files or one
    of its build steps fails (a broken environment.yml, a failing RUN or postBuild).

    422 by default: the request is well formed, what it names cannot be built. The message
    carries repo2docker's own words.
    """

    def __init__(self, message: str, status_code: int = 422):
        super().__init__(message, status_code)


def outcome(status_code: int) -> str:
    """The metrics label of a failure: "failed" (the request's or repository's fault) or
    "error" (ours), so a dashboard can alert on our errors alone."""
    return "error" if status_code >= 500 else "failed"
