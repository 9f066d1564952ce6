import pytest

pytest.importorskip("segment_anything", reason="parity tests need the official segment-anything package")
