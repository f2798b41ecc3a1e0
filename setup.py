"""Build hook: ship the top-level kernels/ (CUDA sources) inside the wheel."""

from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

#: repository folder -> (folder inside the built package, file pattern)
SHIPPED = {"kernels": ("realtime_vrn/kernels", "*.cu")}


class BuildPyWithShippedFolders(build_py):
    def run(self) -> None:
        super().run()
        for source, (target, pattern) in SHIPPED.items():
            for path in sorted(Path(source).glob(pattern)):
                destination = Path(self.build_lib, target, path.name)
                self.mkpath(str(destination.parent))
                self.copy_file(str(path), str(destination))


setup(cmdclass={"build_py": BuildPyWithShippedFolders})
