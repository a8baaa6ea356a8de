"""Stacked LoRA layers: the stacking control on LoRALinear and PEFT layers, and the prototype
rule of scaling.stacked against the one-layer derivation of scaling.laws."""
from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from torch import nn

from scaling import laws
from scaling.lora_layers import LoRALinear, detach_lora_inputs
from scaling.stacked import layer_changes, stacked_corner, stacked_edge
from scaling.theory import predict
from scaling.verdicts import bounded_verdict


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


# -- the stacked laws in scaling.laws' calculus (Adam, mean-field mlp, the catalogue's held rates) --
DEPTHS = (2, 3, 4)


@pytest.mark.parametrize("depth", DEPTHS)
def test_init1_stacked_edges_are_the_derived_closed_forms(depth):
    def edge(s, **kw):
        return laws.predict_edge("mlp", "adam", "1", s, None, depth=depth, **kw)
    b, ratio, one = edge("b-edge"), edge("ratio"), edge("one-rate")
    assert (b.claim, ratio.claim, one.claim) == ("exact",) * 3
    assert b.exponent == pytest.approx(-(depth - 1) / (2 * depth))          # -1/4, -1/3, -3/8
    assert ratio.exponent == pytest.approx(-1 - (depth - 1) / (2 * depth))  # -5/4, -4/3, -11/8
    assert one.exponent == pytest.approx(-0.5)
    assert b.depth == depth and not b.detached
    # the held eta_B ~ n^0 lies beyond the stacked B edge at large n: no A edge, only bounds
    a = edge("a-edge")
    assert (a.exponent, a.claim) == (None, "none")
    assert (a.lower, a.upper) == pytest.approx((-1 - (depth - 1) / 2, -1))
    corner = laws.predict_corner("mlp", "adam", "1", depth=depth)
    assert (corner.exponent, corner.claim) == (None, "none")
    low = (depth + 1) / (2 * depth)  # the stacked B edge over the one-layer A edge n^-1
    assert (corner.lower, corner.upper) == pytest.approx((low, low + (depth - 1) / 2))


@pytest.mark.parametrize("depth", DEPTHS)
def test_init2_stacked_edges_keep_one_layer_laws_but_the_one_rate_edge(depth):
    for s, one_layer in (("b-edge", 0.0), ("a-edge", -1.0), ("ratio", -1.0)):
        p = laws.predict_edge("mlp", "adam", "2", s, None, depth=depth)
        assert (p.exponent, p.claim) == (pytest.approx(one_layer), "exact")
    one = laws.predict_edge("mlp", "adam", "2", "one-rate", None, depth=depth)
    assert (one.exponent, one.claim) == (pytest.approx(-1 + 1 / (2 * depth)), "exact")  # the forward link
    assert laws.predict_corner("mlp", "adam", "2", depth=depth).exponent == pytest.approx(1.0)
    # the control cuts the backward link only: Init[2]'s forward link and its one-rate edge stay
    assert laws.predict_edge("mlp", "adam", "2", "one-rate", None, depth=depth, detached=True).exponent == \
        pytest.approx(-1 + 1 / (2 * depth))


@pytest.mark.parametrize("depth", DEPTHS)
def test_the_control_gives_back_the_one_layer_exponents_under_init1(depth):
    for s in laws.SLICES:
        one = laws.predict_edge("mlp", "adam", "1", s, None)
        cut = laws.predict_edge("mlp", "adam", "1", s, None, depth=depth, detached=True)
        assert (cut.exponent, cut.claim) == (pytest.approx(one.exponent), one.claim)
        assert cut.detached and cut.depth == depth
        opt_one = laws.predict_optimum("mlp", "adam", "1", s, None)
        opt_cut = laws.predict_optimum("mlp", "adam", "1", s, None, depth=depth, detached=True)
        assert (opt_cut.exponent, opt_cut.claim) == (opt_one.exponent, opt_one.claim)
    assert laws.predict_corner("mlp", "adam", "1", depth=depth, detached=True).exponent == pytest.approx(1.0)


@pytest.mark.parametrize("model,opt,init", [("mlp", "adam", "1"), ("mlp", "adam", "2"), ("linear", "adam", "1"),
                                            ("toy", "sgd", "2")])
def test_depth_one_is_the_one_layer_path(model, opt, init):
    for s in laws.SLICES:
        old = laws.predict_edge(model, opt, init, s, None)
        new = laws.predict_edge(model, opt, init, s, None, depth=1, detached=False)
        assert old == new
        assert laws.predict_optimum(model, opt, init, s, None) == laws.predict_optimum(model, opt, init, s, None,
                                                                                         depth=1)
    assert laws.predict_corner(model, opt, init) == laws.predict_corner(model, opt, init, depth=1)


@pytest.mark.parametrize("kwargs,match", [(dict(depth=0), "positive integer"), (dict(depth=2.0), "positive integer"),
                                          (dict(depth=1, detached=True), "depth 2 or more")])
def test_bad_depth_is_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        laws.predict_edge("mlp", "adam", "1", "b-edge", None, **kwargs)


def test_a_stack_is_derived_for_the_mlp_only():
    with pytest.raises(ValueError, match="for the mlp"):
        laws.predict_edge("linear", "adam", "1", "b-edge", None, depth=2)
    with pytest.raises(ValueError, match="positive integer"):
        laws.predict_corner("mlp", "adam", "1", depth=-1)


def test_gradient_descent_on_a_stack_bounds_the_b_edge_only():
    b = laws.predict_edge("mlp", "sgd", "1", "b-edge", None, depth=2)
    assert (b.exponent, b.claim, b.upper) == (None, "none", 0.5)
    cut = laws.predict_edge("mlp", "sgd", "1", "b-edge", None, depth=2, detached=True)
    assert (cut.exponent, cut.upper) == (None, None)


@pytest.mark.parametrize("depth", (1, 2, 3, 4))
@pytest.mark.parametrize("init", ("1", "2"))
@pytest.mark.parametrize("detached", (False, True))
def test_the_prototype_rule_and_the_calculus_agree(depth, init, detached):
    """scaling.stacked's closed-form recursion against scaling.laws' gamma calculus: the same edge
    wherever the calculus claims one; where it claims none the prototype is censored (Init[1]'s A
    edge) or gives the calculus' upper bound (the one-layer Init[2] one-rate edge, left open)."""
    if detached and depth == 1:
        return
    for s in laws.SLICES:
        p = laws.predict_edge("mlp", "adam", init, s, None, depth=depth, detached=detached)
        e = stacked_edge(s, depth, init, detached=detached)
        if p.claim == "exact":
            assert e.exponent == pytest.approx(p.exponent, abs=1e-6), s
        elif e.exponent is None:
            assert e.censored == "below" and p.lower is not None, s
        else:
            assert e.exponent == pytest.approx(p.upper, abs=1e-6), s
    c = laws.predict_corner("mlp", "adam", init, depth=depth, detached=detached)
    proto = stacked_corner(depth, init, detached=detached)
    assert (proto is None) == (c.exponent is None)
    if proto is not None:
        assert proto == pytest.approx(c.exponent, abs=1e-6)


# -- a layer behind another one: theory.predict(layer=) and its bounded verdicts ------------------
@pytest.mark.parametrize("step", (4, 8))
def test_loraplus_second_layer_is_a_crossover_between_zero_and_one_half(step):
    p = predict("mlp", "adam", "1", -1, 0, step, layer=2)
    # z_a and delta2 (and dz_b, their sum with delta1 and delta3) between the link-free 0 and +1/2
    assert p.bounds == {"z_a": (0.0, 0.5), "delta2": (0.0, 0.5), "dz_b": (0.0, 0.5)}
    assert {k: p.exponents[k] for k in ("delta1", "delta3", "dz_a")} == {"delta1": 0.0, "delta3": 0.0, "dz_a": 0.0}
    cut = predict("mlp", "adam", "1", -1, 0, step, layer=2, detached=True)
    assert cut.bounds == {} and cut.exponents["z_a"] == 0.0
    assert predict("mlp", "adam", "1", -1, 0, step) == predict("mlp", "adam", "1", -1, 0, step, layer=1)


def test_before_the_link_opens_the_second_layer_keeps_the_one_layer_exponents():
    p = predict("mlp", "adam", "1", -1, 0, 2, layer=2)
    assert p.bounds == {} and p.exponents["z_a"] == 0.0
    with pytest.raises(ValueError, match="positive integer"):
        predict("mlp", "adam", "1", -1, 0, 4, layer=0)
    with pytest.raises(ValueError, match="in series"):
        predict("linear", "adam", "1", -1, 0, 4, layer=2)


def _fit(lo, hi, widths=5, seeds=4):
    return SimpleNamespace(slope=(lo + hi) / 2, ci_low=lo, ci_high=hi, n_widths=widths, n_seeds=seeds)


def test_bounded_verdict_is_inconclusive_inside_and_fails_outside():
    assert bounded_verdict(_fit(0.05, 0.15), 0.0, 0.5, 0.15)[0] == "INCONCLUSIVE"
    assert bounded_verdict(_fit(0.55, 0.70), 0.0, 0.5, 0.15)[0] == "INCONCLUSIVE"   # within the tolerance
    v, why = bounded_verdict(_fit(0.70, 0.90), 0.0, 0.5, 0.15)
    assert v == "FAIL" and "misses" in why
    assert bounded_verdict(_fit(-0.60, -0.20), 0.0, 0.5, 0.15)[0] == "FAIL"
    v, why = bounded_verdict(_fit(0.70, 0.90, widths=2), 0.0, 0.5, 0.15)
    assert v == "INCONCLUSIVE" and "too little data" in why
    assert bounded_verdict(_fit(0.70, 0.90, seeds=1), 0.0, 0.5, 0.15)[0] == "INCONCLUSIVE"
    assert bounded_verdict(None, 0.0, 0.5, 0.15)[0] == "INCONCLUSIVE"
