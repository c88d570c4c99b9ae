"""Build hook: the wheel carries the top-level sql/ and k8s/ as cartrita_assets/_data/{sql,k8s}.

They stay at the top level of the repository (the design card); an installed package finds them
through cartrita_assets.paths.data_path.
"""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py


class BuildPyWithData(build_py):
    def run(self) -> None:
        super().run()
        for kind in ("sql", "k8s"):
            target = Path(self.build_lib) / "cartrita_assets" / "_data" / kind
            shutil.copytree(Path(__file__).parent / kind, target, dirs_exist_ok=True)


setup(cmdclass={"build_py": BuildPyWithData})
