"""Courses with seats: a registry of courses, their weekly windows, their launch allowance.

- ``model.py``: what a course is (patterns, seats, windows, key) and its validation;
- ``registry.py``: the courses kept in the state folder (survive a restart), their
  prebuild states and launch history;
- ``schedule.py``: when a course's environments are prebuilt and its seats kept warm;
- ``allowance.py``: the per-course launch allowance the launch limits consult;
- ``manager.py``: the ``Courses`` options, the scheduler that prebuilds and fills the pool,
  and who may manage which course;
- ``plot.py``: launches over time as a server-rendered SVG for the instructor's page.
"""
