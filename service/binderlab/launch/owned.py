"""Launches that belong to a logged-in user (logged-in mode, c.BinderLab.authentication).

A user has one session per repository (a JupyterHub named server, sessions/launcher.py).
A launch of a repository whose session runs returns to it, and it does so before the
launch asks for GPUs or a session slot: the running server holds its own, and a user with
one GPU session under max_gpus_per_user = 1 must get back to it, not a 429.
"""

from binderlab.launch import events as ev
from binderlab.launch.context import LaunchContext, StartedSession


async def running_session(launcher, ctx: LaunchContext,
                          sessions_page: str = "/sessions") -> dict | None:
    """The event saying the launch returns to the user's running session (ctx.session is
    set), or None when the launch must start one (anonymous, or nothing running)."""
    running = getattr(launcher, "running", None)  # only a hub launcher knows hub users
    if not ctx.request.user or running is None:
        return None
    found = await running(ctx.request.user, ctx.repo_key)
    if found is None:
        return None
    ctx.session = StartedSession(found[ev.URL], found[ev.TOKEN], list(found.get("gpus", [])))
    message = "Returning to your running session"
    if found.get("commit") and found["commit"] != ctx.commit:
        # the user's work is in that session: say what it runs rather than replace it
        message += (f", started at {found['commit'][:12]} (stop it on {sessions_page} "
                    f"to start {ctx.commit[:12]})")
    return ev.event(ev.LAUNCHING, message)
