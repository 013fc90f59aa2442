"""binderlab: a git repository becomes a live, reproducible JupyterLab session."""

from binderlab._version import __version__

__all__ = ["__version__"]
