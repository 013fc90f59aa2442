# Logged-in mode with any OpenID Connect provider (a university's Keycloak, Shibboleth's
# OIDC OP, Azure AD/Entra, Google Workspace, Authentik, ...): oauthenticator's
# GenericOAuthenticator, its endpoints read from the provider's discovery document.
#
# In binderlab_config.py:
#   c.BinderLab.authentication = "required"          # or "optional"
#   c.UpApp.hub_config_overlay = "/etc/binderlab/auth/oidc.py"
# 1. Register a confidential client at the provider with redirect URI = the hub's public
#    URL + /hub/oauth_callback, scopes openid, profile, email.
# 2. In /etc/binderlab/binderlab.env (OAUTH_* and LOGIN_SERVICE are read by oauthenticator):
#      BINDERLAB_OIDC_ISSUER=https://login.example.org/realms/university
#      OAUTH_CLIENT_ID=...
#      OAUTH_CLIENT_SECRET=...
#      OAUTH_CALLBACK_URL=https://hub.example.org/hub/oauth_callback
#      LOGIN_SERVICE=University account               # the login button's text
# 3. Who may log in: members of groups in the token's "groups" claim, comma-separated,
#      BINDERLAB_OIDC_GROUPS=students,staff
#    or every account of this provider (a department's own identity provider):
#      BINDERLAB_OIDC_ALLOW_ALL=1
#    and the hub's admins: BINDERLAB_HUB_ADMINS=alice
import json
import os
import urllib.request

c = get_config()  # noqa: F821 (provided by JupyterHub)


def listed(name: str) -> set[str]:
    return {v.strip() for v in os.environ.get(name, "").split(",") if v.strip()}


issuer = os.environ.get("BINDERLAB_OIDC_ISSUER", "").rstrip("/")
if not issuer:
    raise ValueError("auth/oidc.py: set BINDERLAB_OIDC_ISSUER to the provider's issuer URL "
                     "(its /.well-known/openid-configuration is read at start)")
# OpenID Connect Discovery 1.0: the provider names its own endpoints, so one issuer URL is
# all an operator copies (oauthenticator 17 takes the endpoints, not the issuer)
discovery_url = issuer + "/.well-known/openid-configuration"
try:
    with urllib.request.urlopen(discovery_url, timeout=15) as response:
        discovery = json.load(response)
except (OSError, ValueError) as e:
    raise ValueError(f"auth/oidc.py: cannot read {discovery_url}: {e}") from e

c.JupyterHub.authenticator_class = "generic-oauth"
c.GenericOAuthenticator.authorize_url = discovery["authorization_endpoint"]
c.GenericOAuthenticator.token_url = discovery["token_endpoint"]
c.GenericOAuthenticator.userdata_url = discovery["userinfo_endpoint"]
c.GenericOAuthenticator.scope = ["openid", "profile", "email"]
# the name people know themselves by; "sub" is stable but opaque, "email" also works
c.GenericOAuthenticator.username_claim = "preferred_username"
groups = listed("BINDERLAB_OIDC_GROUPS")
if groups:
    # the userinfo answer's "groups" claim becomes the person's JupyterHub groups
    c.GenericOAuthenticator.manage_groups = True
    c.GenericOAuthenticator.auth_state_groups_key = "oauth_user.groups"
    c.GenericOAuthenticator.allowed_groups = groups
elif os.environ.get("BINDERLAB_OIDC_ALLOW_ALL") == "1":
    c.GenericOAuthenticator.allow_all = True
else:
    raise ValueError("auth/oidc.py: set BINDERLAB_OIDC_GROUPS (groups whose members may log "
                     "in) or BINDERLAB_OIDC_ALLOW_ALL=1 (every account of the provider)")
c.Authenticator.admin_users = listed("BINDERLAB_HUB_ADMINS")
