"""Writes `_buildinfo.py` into the package at build time: the build date and the host name.

Both are read at build time, so the wheel differs between hosts and between days. The date is
read from the clock (not SOURCE_DATE_EPOCH), in UTC, at day resolution.
"""

import socket
import time
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py


class BuildPyWithInfo(build_py):
    def run(self) -> None:
        super().run()
        target = Path(self.build_lib) / "cihub_sample_buildinfo" / "_buildinfo.py"
        target.write_text(
            f"BUILD_DATE = {time.strftime('%Y-%m-%d', time.gmtime())!r}\n"
            f"BUILD_HOST = {socket.gethostname()!r}\n"
        )


setup(cmdclass={"build_py": BuildPyWithInfo})
