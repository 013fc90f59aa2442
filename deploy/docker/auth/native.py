# Logged-in mode with the hub's own accounts: jupyterhub-nativeauthenticator (PyPI). People
# sign up on the hub with a user name and password; an admin authorizes each account
# before it can log in. For a course without a university login or LMS. Passwords are
# kept by the hub (bcrypt hashes in its database), not by binderlab.
#
# pip install jupyterhub-nativeauthenticator   (in the hub's environment)
# In binderlab_config.py:
#   c.BinderLab.authentication = "required"          # or "optional"
#   c.UpApp.hub_config_overlay = "/etc/binderlab/auth/native.py"
# In /etc/binderlab/binderlab.env, the admins (comma-separated):
#   BINDERLAB_HUB_ADMINS=teacher
# The admin signs up first under that name (<hub>/hub/signup; admins need no
# authorization), then authorizes students at <hub>/hub/authorize.
import os

c = get_config()  # noqa: F821 (provided by JupyterHub)

admins = {v.strip() for v in os.environ.get("BINDERLAB_HUB_ADMINS", "").split(",")
          if v.strip()}
if not admins:
    # with nobody to authorize sign-ups, nobody could ever log in
    raise ValueError("auth/native.py: set BINDERLAB_HUB_ADMINS to the user names that "
                     "authorize sign-ups")
c.JupyterHub.authenticator_class = "native"
c.Authenticator.admin_users = admins
# sign-ups wait for an admin (open_signup would let anyone who finds the page in)
c.NativeAuthenticator.open_signup = False
# who may log in is that authorization (NativeAuthenticator checks it at every login);
# JupyterHub's own allow list would refuse every account it has not heard of
c.Authenticator.allow_all = True
c.NativeAuthenticator.minimum_password_length = 10
c.NativeAuthenticator.check_common_password = True
# a password guesser is locked out for a while after a few failures
c.NativeAuthenticator.allowed_failed_logins = 5
c.NativeAuthenticator.seconds_before_next_try = 600

# jupyterhub-nativeauthenticator 1.3.0 (the latest release) times its login with the hub's
# statsd client, which JupyterHub 6 removed (jupyterhub/jupyterhub#5407): there, every
# login form it receives fails with a 500. Until a release follows, its login handler gets
# a timer that records nothing (JupyterHub's own Prometheus metrics still time logins). On
# a JupyterHub that still has statsd this does nothing.
from nativeauthenticator import handlers as native_handlers  # noqa: E402


class _NoTimer:
    def start(self):
        return self

    def stop(self, send=True):
        pass


class _NoStatsd:
    def timer(self, name):
        return _NoTimer()


if not hasattr(native_handlers.LoginHandler, "statsd"):
    native_handlers.LoginHandler.statsd = _NoStatsd()
