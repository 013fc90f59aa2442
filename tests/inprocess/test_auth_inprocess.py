"""Logged-in mode's routing through the real handlers (no hub: the redirect to its OAuth
authorization is all an anonymous browser gets); the flows with a real hub and logins are
in tests/test_logged_in.py."""

from urllib.parse import parse_qs, urlparse

import pytest
from jupyterhub.slugs import is_valid_safe_slug
from tornado.httpclient import AsyncHTTPClient
from traitlets import TraitError

from binderlab.contract import HubSettings, server_name


async def get(app, path, **kwargs):
    return await AsyncHTTPClient().fetch(app.public_url + path, follow_redirects=False,
                                         raise_error=False, **kwargs)


@pytest.mark.parametrize("path", ["", "v2/gh/inproc/x/main", "build/gh/inproc/x/main",
                                  "login?next=/v2/gh/inproc/x/main"])
async def test_required_sends_anonymous_browsers_to_the_hub(start_binderlab, path):
    app = await start_binderlab(BinderLab={"authentication": "required"})
    response = await get(app, path, headers={"Accept": "text/event-stream"})
    assert response.code == 302, response.body
    location = urlparse(response.headers["Location"])
    hub = urlparse(app.launcher.hub_url)
    assert (location.netloc, location.path) == (hub.netloc, "/hub/api/oauth2/authorize")
    query = parse_qs(location.query)
    assert query["client_id"] == ["service-binderlab"]
    assert query["redirect_uri"] == [app.public_url + "oauth_callback"]
    # the OAuth state is bound to this browser by a cookie, which carries where to go back
    assert query["state"] and "Set-Cookie" in response.headers


async def test_optional_and_none_launch_anonymously(start_binderlab, streams, repo):
    for mode in ("optional", "none"):
        app = await start_binderlab(BinderLab={"authentication": mode})
        assert (await get(app, "")).code == 200
        assert (await streams(app, f"gh/{repo.gh_spec}/main").end())["phase"] == "ready"
        if mode == "optional":  # logging in is the visitor's choice
            assert (await get(app, "login")).code == 302
        else:  # no logins on this host: no login routes
            assert (await get(app, "login")).code == 404
            assert (await get(app, "oauth_callback?code=x&state=y")).code == 404


def test_server_names_are_valid_and_distinct():
    keys = ["gh/A/b", "gh/a/B", "gh/owner/" + "long-name" * 20, "git/https%3A%2F%2Fx/y",
            "zenodo/10.5281/zenodo.1", "gh/Ünïcode/répo"]
    names = [server_name(k) for k in keys]
    assert all(is_valid_safe_slug(n) for n in names), names
    assert len(set(names)) == len(names)
    assert server_name("gh/A/b") == server_name("gh/A/b")


def test_authentication_reaches_the_hub():
    settings = HubSettings(authentication="required")
    assert settings.to_env()["BINDERLAB_AUTHENTICATION"] == "required"
    assert HubSettings.from_env(settings.to_env()) == settings
    assert HubSettings.from_env({}).authentication == "none"


async def test_unknown_mode_is_refused_with_the_choices(start_binderlab):
    with pytest.raises(TraitError) as refused:
        await start_binderlab(BinderLab={"authentication": "sometimes"})
    assert "sometimes" in str(refused.value) and "required" in str(refused.value)
