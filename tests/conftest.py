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


_LIBRARIES: list = []


def import_transformers():
    """transformers, or skip; torchvision's CUDA build next to a CPU torch fails to import unless the two ops it
    fakes exist (TORCH_NOTES.md), and transformers imports torchvision when it is installed."""
    import torch

    transformers = pytest.importorskip("transformers")
    try:
        torch.ops.torchvision.nms  # noqa: B018
    except (AttributeError, RuntimeError):
        lib = torch.library.Library("torchvision", "DEF")
        lib.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        lib.define("qnms(Tensor qdets, Tensor scores, float iou_threshold) -> Tensor")
        _LIBRARIES.append(lib)  # the definitions last as long as the Library object
    return transformers


def example(name: str) -> str:
    return os.path.join(EXAMPLES, name)


sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
