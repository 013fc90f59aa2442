"""A course and the real warm pool together (issue 14): registering a course with seats
prebuilds its environment and fills the pool to its seat count; a student's launch with the
course key claims a warm seat, with the commit pushed after the pool filled; the pool refills
the seat; removing the course releases its warm seats and leaves the student's session.
"""

import pytest
import requests

from tests.harness.sse import follow
from tests.test_pool import POOL_CONFIG, contents, user_of, wait_for, warm_users

pytestmark = [pytest.mark.docker, pytest.mark.slow]

COURSE_POOL = POOL_CONFIG + """
c.WarmPool.rate_window = 0  # only the course asks for warm sessions
c.Courses.check_interval = 0.5
"""


def course_api(svc, method, path="", **kwargs):
    token = (svc.workdir / "state" / "courses_api_token").read_text().strip()
    response = requests.request(method, f"{svc.url}api/courses{path}", timeout=30,
                                headers={"Authorization": f"token {token}"}, **kwargs)
    assert response.status_code < 300, response.text
    return response.json()


def seats(svc, course_id: str) -> dict:
    [environment] = course_api(svc, "GET", f"/{course_id}")["environments"]
    return {"state": environment.get("state"), **environment["pool"]}


def test_a_course_fills_the_pool_and_its_key_claims_a_seat(make_service, git_server,
                                                          docker_client):
    svc = make_service("up", extra_config=COURSE_POOL)
    repo = git_server.create("requirements", owner="poolcourse")
    course = course_api(svc, "POST", json={"id": "optics-2", "seats": 2,
                                           "patterns": [f"gh/{repo.gh_spec}/main"]})
    # registration prebuilds the environment, then the scheduler fills two seats
    wait_for(lambda: seats(svc, "optics-2")["warm"] == 2, timeout=300,
             what="two warm seats of the course")
    assert seats(svc, "optics-2") | {"claimed": 0} == {
        "state": "ready", "target": 2, "warm": 2, "starting": 0, "claimed": 0}
    warm = set(warm_users(svc, 2))
    assert len(warm) == 2

    # the instructor pushes a notebook after the pool filled; a student launches with the key
    repo.commit({"lecture.ipynb": '{"cells": [], "metadata": {}, "nbformat": 4, '
                 '"nbformat_minor": 5}'}, "today's lecture")
    events = follow(f"{svc.url}build/gh/{repo.gh_spec}/main", params={"course": course["key"]})
    ready = events[-1]
    assert ready["phase"] == "ready", events
    assert "Claimed a warm session\n" in [e.get("message") for e in events]
    student = user_of(ready)
    assert student in warm
    names = {i["name"] for i in contents(ready["url"], ready["token"]).json()["content"]}
    assert "lecture.ipynb" in names, names  # the new commit, not the prebuilt one
    # the seat is counted as claimed and refilled to the course's two
    assert seats(svc, "optics-2")["claimed"] == 1
    wait_for(lambda: len(warm_users(svc, 2, {student})) == 2, what="the seat's refill")

    # the course is removed: its warm seats go, the student's session stays
    course_api(svc, "DELETE", "/optics-2")
    wait_for(lambda: svc.metric("binderlab_pool_warm_sessions") == 0
             and not warm_users(svc, 0, {student}), what="the course's seats released")
    assert contents(ready["url"], ready["token"]).status_code == 200
    running = docker_client.containers.list(filters={"label": f"binderlab.user={student}"})
    assert len(running) == 1
