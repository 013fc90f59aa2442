# LMS launches with LTI 1.1 (older LMS installations and "external tool" links that still
# use consumer keys): a hub overlay (copy it to /etc/binderlab/ and set
# c.UpApp.hub_config_overlay to it), loaded after the shipped jupyterhub_config.py, with
# c.BinderLab.authentication = "required" (or "optional").
#
# Register the tool in the LMS (README, "LMS (LTI 1.3 and 1.1)"):
#   launch URL     <hub>/hub/lti/launch        (the XML configuration: <hub>/hub/lti11/config)
#   consumer key and shared secret: the two values below
#   custom fields  repo=gh/owner/course  ref=main  file=week1/intro.ipynb
#                  (or custom next=<binder>/v2/gh/owner/course/main?labpath=week1/intro.ipynb)
import os

c = get_config()  # noqa: F821 (provided by JupyterHub)
env = os.environ

c.JupyterHub.authenticator_class = "binderlab-lti11"
# the consumer key and secret the LMS signs launches with (OAuth 1.0a HMAC-SHA1); keep the
# secret out of files others can read (an EnvironmentFile of the systemd unit, mode 0600)
c.LTI11Authenticator.consumers = {
    env["BINDERLAB_LTI11_CONSUMER_KEY"]: env["BINDERLAB_LTI11_CONSUMER_SECRET"]}
# who the student is on the hub: "user_id" (stable, opaque), or e.g.
# "lis_person_contact_email_primary" or Canvas's "custom_canvas_user_login_id"
c.LTI11Authenticator.username_key = env.get("BINDERLAB_LTI_USERNAME_KEY", "user_id")
c.Authenticator.allow_all = True

# c.CourseLaunch.instructor_roles = ["Instructor", "TeachingAssistant", "ContentDeveloper"]
