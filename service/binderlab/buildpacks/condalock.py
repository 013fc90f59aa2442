"""A repo2docker build pack for ``conda-lock.yml`` (conda-lock's unified lock file).

repo2docker's conda build pack sets up micromamba and the server environment
(``${NB_PYTHON_PREFIX}``) as usual; the lock is then installed as it is, without a solve,
into its own environment (``micromamba create -f conda-lock.yml``; micromamba reads the
unified format and picks the image's platform), which becomes the ``python3`` kernel.
An ``environment.yml`` next to the lock (often its source) is not applied: the lock wins.

Everything happens in the pre-assemble phase from ``conda-lock.yml`` alone, so commits
that change only notebooks share one image.
"""

import os

from repo2docker.buildpacks.conda import CondaBuildPack
from ruamel.yaml import YAML

LOCK = "conda-lock.yml"


class CondaLockBuildPack(CondaBuildPack):
    """``conda-lock.yml`` in the repository root or ``binder/``."""

    #: the locked environment
    locked_prefix = "${CONDA_DIR}/envs/locked"

    # the lock replaces environment.yml: repo2docker's own env update must not see one
    @property
    def environment_yaml_path(self):
        return None

    @property
    def environment_yaml(self):
        return {}

    def detect(self) -> bool:
        return os.path.exists(self.binder_path(LOCK))

    def _locked_names(self) -> frozenset[str]:
        with open(self.binder_path(LOCK)) as f:
            lock = YAML(typ="safe", pure=True).load(f) or {}
        if not isinstance(lock, dict) or not isinstance(lock.get("package"), list):
            raise ValueError(f"{LOCK} is not a conda-lock unified lock file "
                             "(no 'package' list); make it with `conda-lock lock`.")
        return frozenset(p.get("name", "") for p in lock["package"] if isinstance(p, dict))

    def get_path(self):
        return [f"{self.locked_prefix}/bin", *super().get_path()]

    def get_env(self):
        return [*super().get_env(), ("CONDA_DEFAULT_ENV", self.locked_prefix)]

    def get_preassemble_script_files(self):
        files = dict(super().get_preassemble_script_files())
        files[self.binder_path(LOCK)] = self.binder_path(LOCK)
        return files

    def get_env_scripts(self):
        lock = self.binder_path(LOCK)
        install = (f'${{MAMBA_EXE}} create --yes -p {self.locked_prefix} -f "{lock}"')
        if "ipykernel" not in self._locked_names():
            # a kernel needs ipykernel; keep every locked package as it is
            install += (f" && ${{MAMBA_EXE}} install --yes -p {self.locked_prefix} "
                        "--freeze-installed ipykernel")
        install += (" && ${MAMBA_EXE} clean --all -f -y && "
                    f"${{MAMBA_EXE}} list -p {self.locked_prefix}")
        kernel = (f"{self.locked_prefix}/bin/python -m ipykernel install --prefix "
                  "${NB_PYTHON_PREFIX} --name python3 --display-name 'Python 3 (conda-lock)'")
        # repo2docker's entrypoint runs in a login shell, which resets PATH from /etc/profile
        profile = (f"echo 'export PATH={self.locked_prefix}/bin:$PATH' "
                   "> /etc/profile.d/zz-conda-lock.sh")
        return [("${NB_USER}", install), ("${NB_USER}", kernel), ("root", profile)]
