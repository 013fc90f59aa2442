"""The push webhook under abuse (issue 12): secrets per repository, replayed deliveries,
prebuilds per repository per hour. The policy's bookkeeping directly, then the real
handler of a running service (the pushed repositories do not exist, so a prebuild that is
started fails at once and builds nothing)."""

import uuid

import pytest

from binderlab.web.hookpolicy import GitHubWebhookPolicy
from tests.test_prebuild import signed_push

SHA = "0123456789abcdef0123456789abcdef01234567"


def test_a_repository_with_its_own_secret_is_signed_only_with_it():
    policy = GitHubWebhookPolicy(repository_secrets={"Course/Week1": "own"})
    assert policy.secret_for("course/week1", "host") == "own"
    assert policy.secret_for("other/repo", "host") == "host"
    assert policy.secret_for("other/repo", "") == ""  # not accepted at all


def test_deliveries_are_remembered_for_a_while_and_in_bounded_number():
    policy = GitHubWebhookPolicy(delivery_memory=60, max_remembered_deliveries=3)
    assert policy.first_delivery("a", now=0)
    assert not policy.first_delivery("a", now=59)
    assert policy.first_delivery("a", now=61)  # forgotten after delivery_memory
    for name in "bcd":
        assert policy.first_delivery(name, now=62)
    assert len(policy._deliveries) <= 3


def test_prebuilds_per_repository_per_hour():
    policy = GitHubWebhookPolicy(prebuilds_per_hour=2)
    assert policy.allow_prebuild("o/r", now=0) and policy.allow_prebuild("O/R", now=1)
    assert not policy.allow_prebuild("o/r", now=2)
    assert policy.allow_prebuild("o/other", now=2)  # per repository
    assert policy.allow_prebuild("o/r", now=3600)  # the hour has passed
    assert GitHubWebhookPolicy(prebuilds_per_hour=0).allow_prebuild("o/r", now=0)


def push(name: str) -> dict:
    return {"ref": "refs/heads/main", "after": SHA, "repository": {"full_name": name}}


@pytest.mark.docker
def test_the_handler_refuses_replays_foreign_secrets_and_floods(make_service):
    own = f"course/week-{uuid.uuid4().hex[:6]}"
    svc = make_service("serve", extra_config=f"""
c.GitHubWebhookPolicy.repository_secrets = {{{own!r}: "course-secret"}}
c.GitHubWebhookPolicy.prebuilds_per_hour = 2
""")
    # the host secret cannot sign for a repository that has its own
    assert signed_push(svc, push(own)).status_code == 401
    assert signed_push(svc, push(own), secret="course-secret").status_code == 202
    # the same delivery again: acknowledged, not built again
    other = f"test/missing-{uuid.uuid4().hex[:6]}"
    delivery = str(uuid.uuid4())
    first = signed_push(svc, push(other), delivery=delivery)
    again = signed_push(svc, push(other), delivery=delivery)
    assert first.status_code == 202, first.text
    assert again.status_code == 200 and again.json()["status"] == "ignored", again.text
    # a delivery without an id is not accepted
    assert signed_push(svc, push(other), delivery="").status_code == 400
    # floods: the third prebuild of a repository within the hour is refused
    assert signed_push(svc, push(other)).status_code == 202
    flooded = signed_push(svc, push(other))
    assert flooded.status_code == 429 and "prebuilds" in flooded.text
    metrics = __import__("requests").get(f"{svc.url}metrics", timeout=10).text
    assert 'binderlab_webhook_deliveries_total{result="replayed"} 1.0' in metrics
    assert 'binderlab_webhook_deliveries_total{result="rate_limited"} 1.0' in metrics
