"""The ``binderlab`` command: ``up``, ``serve``, ``build``."""

import asyncio
import sys
from urllib.parse import quote

from traitlets import Unicode
from traitlets.config import Application

from ._version import __version__
from .app import BinderLab
from .hub import UpApp
from .pipeline import LaunchRequest


class BuildApp(BinderLab):
    name = "binderlab-build"
    description = """Build (or find) the image of a repository and print its name.

    binderlab build <repo> [--ref REF]

    <repo> is a clone URL (https://host/owner/repo) or a provider spec such as
    gh/<owner>/<repo>. Uses the same configuration as the service (--config)."""

    aliases = {**BinderLab.aliases, "ref": "BuildApp.ref"}
    ref = Unicode("HEAD", help="Branch, tag or commit to build (default HEAD).").tag(config=True)

    def parse_target(self) -> LaunchRequest:
        if len(self.extra_args) != 1:
            raise SystemExit("Usage: binderlab build <repo URL or provider/spec> [--ref REF]")
        target = self.extra_args[0]
        if "://" in target:
            return LaunchRequest(self.providers["git"], f"{quote(target, safe='')}/{self.ref}",
                                 build_only=True)
        prefix, _, spec = target.partition("/")
        if prefix not in self.providers or not spec:
            raise SystemExit(f"Unknown repository {target!r}: give a URL or <provider>/<spec> "
                             f"with provider one of {', '.join(self.providers)}.")
        if self.ref != "HEAD" or spec.count("/") < 2:
            spec = f"{spec}/{quote(self.ref, safe='/')}"
        return LaunchRequest(self.providers[prefix], spec, build_only=True)

    async def run(self) -> int:
        request = self.parse_target()
        image = None
        async for event in self.pipeline.events(request):
            message = event.get("message", "")
            if event["phase"] == "failed":
                sys.stderr.write(message)
                return 1
            if event["phase"] in ("fetching", "building"):
                sys.stderr.write(message)
            image = event.get("imageName", image)
        print(image)
        return 0

    def start(self):
        self.launcher = None
        self.pipeline.launcher = None
        sys.exit(asyncio.run(self.run()))


class BinderLabCommand(Application):
    name = "binderlab"
    version = __version__
    description = "binderlab: git repositories as live, reproducible JupyterLab sessions."
    examples = """
    binderlab up --config binderlab_config.py    # hub + proxy + binder service
    binderlab serve                              # binder service only
    binderlab build https://github.com/o/r --ref main
    """
    subcommands = {
        "up": (UpApp, "Start JupyterHub, its proxy and the binder service on this machine."),
        "serve": (BinderLab, "Run the binder service only (JupyterHub runs elsewhere)."),
        "build": (BuildApp, "Build or find a repository's image and print its name."),
    }

    def start(self):
        if self.subapp is None:
            self.print_help()
            raise SystemExit(2)
        return self.subapp.start()


def main(argv=None):
    BinderLabCommand.launch_instance(argv)


if __name__ == "__main__":
    main()
