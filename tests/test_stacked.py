"""Stacked LoRA layers: the stacking control on LoRALinear and PEFT layers, and the prototype
rule of scaling.stacked against the one-layer derivation of scaling.laws."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from scaling import laws
from scaling.lora_layers import LoRALinear, detach_lora_inputs
from scaling.stacked import layer_changes, stacked_corner, stacked_edge


class TwoLayers(nn.Module):
    def __init__(self, width: int = 12):
        super().__init__()
        self.first = nn.Linear(width, width, bias=False)
        self.second = nn.Linear(width, width, bias=False)

    def forward(self, x):
        return self.second(torch.tanh(self.first(x))).pow(2).mean()


def lora_linear_pair():
    torch.manual_seed(0)
    model = TwoLayers().requires_grad_(False)
    for name in ("first", "second"):
        layer = LoRALinear(getattr(model, name), rank=2)
        with torch.no_grad():
            layer.lora_B.normal_()  # both factors non-zero: a gradient flows through B A
        setattr(model, name, layer)
    return model


def peft_copy(model):
    """The same network with PEFT LoRA layers holding the same factors."""
    from peft import LoraConfig, get_peft_model
    plain = TwoLayers()
    plain.first.weight.data.copy_(model.first.base.weight)
    plain.second.weight.data.copy_(model.second.base.weight)
    peft = get_peft_model(plain, LoraConfig(r=2, lora_alpha=2, target_modules=["first", "second"]))
    for name in ("first", "second"):
        layer = peft.base_model.model.get_submodule(name)
        layer.lora_A["default"].weight.data.copy_(getattr(model, name).lora_A)
        layer.lora_B["default"].weight.data.copy_(getattr(model, name).lora_B)
    return peft


def grads(model, x):
    loss = model(x)
    params = [p for p in model.parameters() if p.requires_grad]
    return loss.detach(), [g.clone() for g in torch.autograd.grad(loss, params)]


def test_the_control_detaches_the_lora_branch_only_alike_on_lora_linear_and_peft():
    x = torch.randn(5, 12, generator=torch.Generator().manual_seed(1))
    ours = lora_linear_pair()
    peft = peft_copy(ours)
    loss, g = grads(ours, x)                       # [A1, B1, A2, B2]
    loss_p, g_p = grads(peft, x)
    torch.testing.assert_close(loss_p, loss)
    for a, b in zip(g_p, g):
        torch.testing.assert_close(a, b)
    assert detach_lora_inputs(ours, ["second"]) == []
    handles = detach_lora_inputs(peft, ["base_model.model.second"])
    assert len(handles) == 1
    loss_c, g_c = grads(ours, x)
    loss_pc, g_pc = grads(peft, x)
    torch.testing.assert_close(loss_c, loss)        # the forward pass does not change
    for i in (2, 3):                                # the second layer's own gradients do not change
        torch.testing.assert_close(g_c[i], g[i])
    for i in (0, 1):                                # the first layer's do: the B2 A2 path is gone
        assert not torch.allclose(g_c[i], g[i])
    for a, b in zip(g_pc, g_c):
        torch.testing.assert_close(a, b)
    for h in handles:
        h.remove()
    with pytest.raises(ValueError, match="not a LoRA layer"):
        detach_lora_inputs(TwoLayers(), ["first"])


@pytest.mark.parametrize("slice_name", ["b-edge", "a-edge", "one-rate", "ratio"])
def test_one_layer_is_the_one_layer_derivation(slice_name):
    p = laws.predict_edge("mlp", "adam", "1", slice_name, None)
    assert stacked_edge(slice_name, 1, "1").exponent == pytest.approx(p.exponent, abs=1e-6)


def test_the_b_edge_falls_with_depth_and_init2_keeps_the_one_layer_laws():
    for depth in (1, 2, 3, 4):
        assert stacked_edge("b-edge", depth, "1").exponent == pytest.approx(-(depth - 1) / (2 * depth), abs=1e-6)
        assert stacked_edge("ratio", depth, "1").exponent == pytest.approx(-1 - (depth - 1) / (2 * depth), abs=1e-6)
        assert stacked_edge("one-rate", depth, "1").exponent == pytest.approx(-0.5, abs=1e-6)
        assert stacked_edge("b-edge", depth, "2").exponent == pytest.approx(0, abs=1e-6)
        assert stacked_edge("a-edge", depth, "2").exponent == pytest.approx(-1, abs=1e-6)
        # Init[2]'s forward link: the next layer's A steps follow its moved input
        one = stacked_edge("one-rate", depth, "2").exponent
        assert one == pytest.approx(-1 + 1 / (2 * depth), abs=1e-6)
        # the control cuts the backward link only: Init[1] back to one layer, Init[2] unchanged
        assert stacked_edge("b-edge", depth, "1", detached=True).exponent == pytest.approx(0, abs=1e-6)
        assert stacked_edge("one-rate", depth, "2", detached=True).exponent == pytest.approx(one, abs=1e-6)
    # a Theta(1) held eta_B lies beyond the stacked B edge at large n: no eta_A trains
    assert stacked_edge("a-edge", 2, "1").censored == "below"
    assert stacked_corner(2, "1") is None
    # held at the stacked B edge (n^-1/4) the A edge is the one-layer product edge n^-1 again
    assert stacked_corner(2, "1", held_a=-0.25) == pytest.approx(-0.25 + 1.0, abs=1e-6)
    # the chain: eta_B = n^b on every layer multiplies by eta_B n^1/2 per layer once eta_B > n^-1/2
    assert layer_changes(3, -1.0, -0.2) == pytest.approx([-0.2, 0.1, 0.4])


def test_under_a_standard_readout_depth_changes_no_b_edge_exponent():
    for depth in (1, 2, 3):
        assert stacked_edge("b-edge", depth, "1", readout="standard").exponent == pytest.approx(-0.5, abs=1e-6)
