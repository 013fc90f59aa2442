"""Every option has help text, and the CLI explains itself."""

import subprocess
import sys

import pytest

from binderlab.app import BinderLab
from binderlab.authenticators.lti import CourseLaunch
from binderlab.commands.cli import BuildApp, EnvHashApp
from binderlab.commands.down import DownApp
from binderlab.commands.up import UpApp
from binderlab.commands.volumes import VolumesApp
from binderlab.spawners.docker import BinderLabSpawner
from binderlab.spawners.kubernetes import BinderLabKubeSpawner
from binderlab.spawners.mixin import BinderLabSessionMixin

OURS = "binderlab."


def own_traits(cls):
    """Configurable traits defined by binderlab's own classes (not inherited from others)."""
    for klass in cls.mro():
        if not klass.__module__.startswith(OURS) or not hasattr(klass, "class_own_traits"):
            continue  # (plain mixins such as commands.preflight.EngineFirst hold no traits)
        for name, trait in klass.class_own_traits(config=True).items():
            yield klass.__name__, name, trait


@pytest.mark.parametrize("cls", [
    *BinderLab().classes, UpApp, BuildApp, DownApp, EnvHashApp, VolumesApp, BinderLabSpawner,
    BinderLabKubeSpawner, BinderLabSessionMixin, CourseLaunch,
], ids=lambda c: c.__name__)
def test_every_option_has_help(cls):
    missing = [f"{k}.{n}" for k, n, t in own_traits(cls) if len((t.help or "").strip()) < 10]
    assert not missing, f"options without help text: {missing}"


@pytest.mark.parametrize("args", [["--help"], ["up", "--help-all"], ["serve", "--help"],
                                  ["build", "--help"], ["env-hash", "--help"],
                                  ["down", "--help"], ["volumes", "--help"]])
def test_cli_help(args):
    out = subprocess.run([sys.executable, "-m", "binderlab", *args],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "binderlab" in out.stdout.lower()


def test_help_all_lists_every_plugin_option():
    out = subprocess.run([sys.executable, "-m", "binderlab", "up", "--help-all"],
                         capture_output=True, text=True, timeout=60).stdout
    for option in ("--GitRepoProvider.allowed_protocols", "--GitHubRepoProvider.host",
                   "--Repo2DockerBuilder.repo2docker_config", "--HubLauncher.hub_url",
                   "--BinderLab.blocked_networks", "--UpApp.hub_internal_url",
                   "--BinderLab.image_disk_budget_gb", "--TemporaryUserReaper.grace"):
        assert option in out


def test_missing_config_file_and_unknown_provider_are_clear(tmp_path):
    config = tmp_path / "bad_config.py"
    config.write_text("c.BinderLab.repo_providers = ['gh', 'svn']\n"
                      f"c.BinderLab.state_dir = {str(tmp_path / 'state')!r}\n")
    out = subprocess.run([sys.executable, "-m", "binderlab", "serve", "--config",
                          str(config)], capture_output=True, text=True, timeout=60)
    assert out.returncode != 0
    assert "Unknown repo provider 'svn'" in out.stderr
