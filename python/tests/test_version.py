"""One version source: CMakeLists.txt's project(bsa VERSION ...) is what the
package and the loaded library report."""

import os
import re

import bsa

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def project_version():
    with open(os.path.join(ROOT, "CMakeLists.txt")) as f:
        m = re.search(r"^project\(bsa\s+VERSION\s+([0-9]+)\.([0-9]+)\.([0-9]+)", f.read(), re.M)
    assert m, "CMakeLists.txt has no project(bsa VERSION x.y.z)"
    return tuple(int(x) for x in m.groups())


def test_library_version_is_the_project_version():
    assert bsa.library_version() == project_version()


def test_package_version_is_the_project_version():
    assert bsa.__version__ == "%d.%d.%d" % project_version()
