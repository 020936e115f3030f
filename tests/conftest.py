import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLES = os.path.join(ROOT, "examples")


@pytest.fixture
def write_model(tmp_path):
    """Write a model file into tmp_path and return its path."""

    def write(source: str, name: str = "model_file.py") -> str:
        path = tmp_path / name
        path.write_text(source)
        return str(path)

    return write


def example(name: str) -> str:
    return os.path.join(EXAMPLES, name)


sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
