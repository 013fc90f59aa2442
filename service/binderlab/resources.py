"""Files binderlab ships beside its code: the front-end and the JupyterHub wiring.

In a wheel they are under binderlab/share/; in a source checkout (editable install) they are
at the top of the repository.
"""

from pathlib import Path

_HERE = Path(__file__).resolve().parent


def _find(name: str) -> Path:
    for candidate in (_HERE / "share" / name, _HERE.parent.parent / name):
        if candidate.exists():
            return candidate
    raise FileNotFoundError(f"binderlab's {name} is missing from the installation")


def frontend_dir() -> Path:
    return _find("frontend")


def hub_config_file() -> Path:
    return _find("jupyterhub_config.py")
