# Logged-in mode with GitHub accounts: oauthenticator's GitHubOAuthenticator.
#
# In binderlab_config.py:
#   c.BinderLab.authentication = "required"          # or "optional"
#   c.UpApp.hub_config_overlay = "/etc/binderlab/auth/github.py"
# 1. Register an OAuth app (https://github.com/settings/applications/new, or under the
#    course's organization) with "Authorization callback URL" = the hub's public URL +
#    /hub/oauth_callback, e.g. https://hub.example.org/hub/oauth_callback.
# 2. Give the hub its id and secret in /etc/binderlab/binderlab.env (oauthenticator reads
#    these variables itself; keep secrets out of config files):
#      OAUTH_CLIENT_ID=...
#      OAUTH_CLIENT_SECRET=...
#      OAUTH_CALLBACK_URL=https://hub.example.org/hub/oauth_callback
# 3. Say who may log in, comma-separated: organizations or organization:team names as they
#    appear in GitHub URLs, and the hub's admins (GitHub user names):
#      BINDERLAB_GITHUB_ORGANIZATIONS=my-course-org,my-dept:teaching-staff
#      BINDERLAB_HUB_ADMINS=alice
import os

c = get_config()  # noqa: F821 (provided by JupyterHub)


def listed(name: str) -> set[str]:
    return {v.strip() for v in os.environ.get(name, "").split(",") if v.strip()}


c.JupyterHub.authenticator_class = "github"
organizations = listed("BINDERLAB_GITHUB_ORGANIZATIONS")
if not organizations:
    # every GitHub account would otherwise be refused (or, with allow_all, let in: anyone
    # on GitHub using the host's GPUs); say so at start instead of at the first login
    raise ValueError("auth/github.py: set BINDERLAB_GITHUB_ORGANIZATIONS to the GitHub "
                     "organizations (or org:team) whose members may log in")
c.GitHubOAuthenticator.allowed_organizations = organizations
# membership is checked with the person's token: read:org shows private memberships too
c.GitHubOAuthenticator.scope = ["read:user", "read:org"]
c.Authenticator.admin_users = listed("BINDERLAB_HUB_ADMINS")
