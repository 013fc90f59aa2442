# Logged-in mode with GitLab accounts (gitlab.com or a department's own GitLab):
# oauthenticator's GitLabOAuthenticator.
#
# In binderlab_config.py:
#   c.BinderLab.authentication = "required"          # or "optional"
#   c.UpApp.hub_config_overlay = "/etc/binderlab/auth/gitlab.py"
# 1. Create an application in GitLab (User/Group settings > Applications) with redirect
#    URI = the hub's public URL + /hub/oauth_callback, confidential, scopes read_user and
#    read_api (read_api lets the hub check group membership).
# 2. In /etc/binderlab/binderlab.env (read by oauthenticator itself):
#      OAUTH_CLIENT_ID=...
#      OAUTH_CLIENT_SECRET=...
#      OAUTH_CALLBACK_URL=https://hub.example.org/hub/oauth_callback
#      GITLAB_URL=https://gitlab.example.org       # leave out for gitlab.com
# 3. Who may log in (comma-separated group paths, subgroups as group/subgroup) and the
#    hub's admins (GitLab user names):
#      BINDERLAB_GITLAB_GROUPS=physics/teaching
#      BINDERLAB_HUB_ADMINS=alice
import os

c = get_config()  # noqa: F821 (provided by JupyterHub)


def listed(name: str) -> set[str]:
    return {v.strip() for v in os.environ.get(name, "").split(",") if v.strip()}


c.JupyterHub.authenticator_class = "gitlab"
groups = listed("BINDERLAB_GITLAB_GROUPS")
if not groups:
    # nobody could log in (or, with allow_all, every account of that GitLab): say so now
    raise ValueError("auth/gitlab.py: set BINDERLAB_GITLAB_GROUPS to the GitLab groups "
                     "whose members may log in")
c.GitLabOAuthenticator.allowed_gitlab_groups = groups
c.GitLabOAuthenticator.scope = ["read_user", "read_api"]
c.Authenticator.admin_users = listed("BINDERLAB_HUB_ADMINS")
