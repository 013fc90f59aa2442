"""HTTP handlers; each module ends with its ``default_handlers`` routes."""

from binderlab.web import (
                           auth,
                           badges,
                           build,
                           courses,
                           environment,
                           hooks,
                           lms,
                           mysessions,
                           pages,
                           status,
                           tickets,
)

default_handlers = [
    *auth.default_handlers,
    *build.default_handlers,
    *tickets.default_handlers,
    *hooks.default_handlers,
    *status.default_handlers,
    *badges.default_handlers,
    *environment.default_handlers,
    *lms.default_handlers,
    *mysessions.default_handlers,
    *courses.default_handlers,
    *pages.default_handlers,
]
