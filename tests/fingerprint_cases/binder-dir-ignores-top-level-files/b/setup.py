from setuptools import setup

setup(name="other")
