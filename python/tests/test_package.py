"""The installed package: the library pip built sits inside it, and its version is the
header's and the project's."""

import re
from pathlib import Path

import qkv
from conftest import ROOT


def test_library_inside_the_installed_package():
    pkg = Path(qkv.__file__).resolve().parent
    assert pkg != (ROOT / "python" / "qkv").resolve(), "tests must run on the installed package"
    assert (pkg / "libqkv.so").is_file()


def test_version():
    header = (ROOT / "include" / "qkv.h").read_text()
    want = re.search(r'#define QKV_VERSION_STRING "([^"]+)"', header).group(1)
    assert qkv.version() == want
    assert re.search(r'^version = "([^"]+)"', (ROOT / "pyproject.toml").read_text(),
                     re.M).group(1) == want
    assert qkv.build_info()
