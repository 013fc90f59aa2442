"""binderlab: a git repository becomes a live, reproducible JupyterLab session."""

from ._version import __version__

__all__ = ["__version__"]
