"""--train: forward plus backward of the loss, with the backward ops' rules."""

import sympy
import torch
from torch.export import Dim

import depthscope
import depthscope.cli as cli
from conftest import example
from depthscope.symbols import size_symbol

b, n = size_symbol("b"), size_symbol("n")


class MLP(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = torch.nn.Linear(16, 32, bias=False)
        self.fc2 = torch.nn.Linear(32, 4, bias=False)

    def forward(self, x):
        return self.fc2(torch.relu(self.fc1(x)))


def test_training_step_triples_matmul_flops():
    inputs, dyn = (torch.randn(3, 16),), {"x": {0: Dim("b")}}
    forward = depthscope.analyze(MLP(), inputs, dynamic_shapes=dyn)
    train = depthscope.analyze(MLP(), inputs, dynamic_shapes=dyn, train=True)
    assert train.mode == "train" and forward.mode == "inference"
    # forward 2*b*(16*32 + 32*4); backward: grad weights for both layers, grad input only for fc2's input
    assert sympy.expand(forward.flops - 2 * b * (16 * 32 + 32 * 4)) == 0
    assert sympy.expand(train.flops - 2 * b * (16 * 32 + 32 * 4) * 3 + 2 * b * 16 * 32) == 0
    assert train.unmodeled == ()
    # weight gradients sum over the batch: depth gains a log(b) term
    assert train.big_o["depth"] == sympy.log(b)


def test_custom_loss_function():
    def loss(out):
        return (out ** 2).mean()

    report = depthscope.analyze(MLP(), (torch.randn(3, 16),), dynamic_shapes={"x": {0: Dim("b")}}, train=True, loss=loss)
    assert report.unmodeled == ()


def test_train_on_gpt_example_is_a_constant_factor_of_forward():
    forward = depthscope.analyze_file(example("gpt.py"))
    train = depthscope.analyze_file(example("gpt.py"), train=True)
    assert train.unmodeled == ()
    assert train.big_o["work"] == forward.big_o["work"] == b * n**2
    assert sympy.log(n) in sympy.Add.make_args(train.big_o["depth"])
    for size in (256, 1024):
        ratio = train.evaluate(b=2, n=size)["work"] / forward.evaluate(b=2, n=size)["work"]
        assert 2.0 <= ratio <= 3.5, ratio


def test_cli_train_flag(capsys):
    assert cli.main(["analyze", example("attention.py"), "--train", "--format", "json"]) == 0
    out = capsys.readouterr().out
    assert '"mode": "train"' in out
