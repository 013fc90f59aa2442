# LMS launches with LTI 1.3 (Canvas, Moodle, Blackboard, D2L, Open edX, ...): a hub overlay
# (copy it to /etc/binderlab/ and set c.UpApp.hub_config_overlay to it), loaded after the
# shipped jupyterhub_config.py, with c.BinderLab.authentication = "required" (or "optional").
#
# The hub is the LTI tool. Register it in the LMS (README, "LMS (LTI 1.3 and 1.1)"):
#   OIDC login initiation URL  <hub>/hub/lti13/oauth_login
#   redirect (launch) URL      <hub>/hub/lti13/oauth_callback
#   target link URI            a binder launch link, <binder>/v2/gh/owner/course/main?labpath=..,
#                              or custom parameters repo=, ref=, file=
# and copy what the LMS shows for the tool into these settings (environment variables here,
# so one file serves every installation; write the values in instead if you prefer).
import os

c = get_config()  # noqa: F821 (provided by JupyterHub)
env = os.environ

# binderlab's LTI 1.3 authenticator: jupyterhub-ltiauthenticator's LTI13Authenticator, which
# after the login opens the course notebook the launch names and keeps the instructors group
c.JupyterHub.authenticator_class = "binderlab-lti13"
# the platform's issuer: Canvas "https://canvas.instructure.com" (cloud), Moodle its own URL
c.LTI13Authenticator.issuer = env["BINDERLAB_LTI13_ISSUER"]
# the client ID the LMS gave the tool (Canvas: the developer key's number; Moodle: "Client ID")
c.LTI13Authenticator.client_id = env["BINDERLAB_LTI13_CLIENT_ID"].split(",")
# the platform's OIDC authorization endpoint and public keys:
#   Canvas  https://sso.canvaslms.com/api/lti/authorize_redirect
#           https://sso.canvaslms.com/api/lti/security/jwks
#   Moodle  <moodle>/mod/lti/auth.php and <moodle>/mod/lti/certs.php
c.LTI13Authenticator.authorize_url = env["BINDERLAB_LTI13_AUTHORIZE_URL"]
c.LTI13Authenticator.jwks_endpoint = env["BINDERLAB_LTI13_JWKS_URL"]
# who the student is on the hub: the id_token's "sub" (stable, opaque; works when the LMS
# shares no names), or "email" (readable; only if the LMS sends it and emails never change)
c.LTI13Authenticator.username_key = env.get("BINDERLAB_LTI_USERNAME_KEY", "sub")
# anyone the LMS launches may log in: the LMS decides who is in the course
c.Authenticator.allow_all = True

# The LMS is another site: its form posts the id_token to the hub across sites, and a
# browser sends the hub's login-state cookies on such a post only if they are
# SameSite=None; Secure (which needs HTTPS). Without it the launch ends in "OAuth state
# missing from cookies". (Over plain http on one machine, as in the tests, nothing is cross-site.)
if env.get("BINDERLAB_HUB_PUBLIC_URL", "").startswith("https://"):
    c.JupyterHub.tornado_settings = {"cookie_options": {"samesite": "None", "secure": True}}

# Who is an instructor (the binder service sees them in this JupyterHub group):
# c.CourseLaunch.instructor_roles = ["Instructor", "TeachingAssistant", "ContentDeveloper"]
# c.CourseLaunch.instructor_group = "instructors"   # c.BinderLab.instructor_group passes it
