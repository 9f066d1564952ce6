"""The package's public surface: every exported name resolves, and importing it has no side effects."""

from __future__ import annotations

import subprocess
import sys

import segany


def test_every_public_name_resolves():
    for name in segany.__all__:
        assert getattr(segany, name) is not None, name
    assert set(segany._EXPORTS) | {"__version__"} == set(segany.__all__)


def test_import_and_help_do_not_import_torch():
    code = "import sys, segany, segany.cli; segany.cli.build_parser(); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
