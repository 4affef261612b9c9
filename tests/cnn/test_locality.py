"""Chapter 3 §3.2: the input-gradient change regularizer, Is-Same-Class canvases, random patches and the ResNet-18
layout (shapes, initialisation, receptive field)."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from rankrepro.cnn.locality import (
    ExplicitInputGradient,
    Region,
    autograd_logits_and_input_gradient,
    canvas_images,
    choose_pair,
    input_gradient_change_penalty,
    penalty_and_logits,
    random_patch_pair,
)
from rankrepro.cnn.resnet import (
    PAPER_WIDTHS,
    SMALL_WIDTHS,
    BasicBlock,
    BatchNormInputGradient,
    ResNet18,
    ResNetConfig,
    SameConvolution,
    batch_norm,
    conv_input_gradient,
    conv_layout,
    receptive_field,
)
from rankrepro.core.errors import ConfigError

I, J = Region(1, 0, 3, 3), Region(0, 4, 4, 2)  # disjoint regions of a (C, 4, 6) input


def _flat(x: torch.Tensor, region: Region) -> torch.Tensor:
    return x[..., region.rows, region.cols].flatten(1)


def _batch(generator: torch.Generator, size: int = 8, channels: int = 2) -> torch.Tensor:
    return torch.randn(size, channels, 4, 6, generator=generator)


def _mlp(generator: torch.Generator, d_in: int, hidden: int = 5):
    w1, w2 = torch.randn(d_in, hidden, generator=generator), torch.randn(hidden, generator=generator)
    return lambda v: torch.tanh(v @ w1) @ w2


def test_separation_rank_one_model_has_penalty_one(generator):
    x = _batch(generator)
    phi, v = _mlp(generator, 2 * 9), torch.randn(2 * 8, generator=generator)

    def product(inputs):  # f = φ(x_I)·ψ(x_J), ψ > 0; it also ignores the pixels outside I ∪ J
        return phi(_flat(inputs, I)) * (1 + (_flat(inputs, J) @ v) ** 2)

    def additive(inputs):  # ∇_{x_I} f does not depend on x_J at all
        return phi(_flat(inputs, I)) + torch.sin(_flat(inputs, J) @ v)

    for model in (product, additive):
        assert input_gradient_change_penalty(model, x, I, J).item() == pytest.approx(1.0, abs=1e-6)


def test_interacting_model_has_penalty_below_one(generator):
    x = _batch(generator)
    phi, mix = _mlp(generator, 2 * 9), torch.randn(2 * 8, 2 * 9, generator=generator)

    def interacting(inputs):  # f = φ(x_I + A x_J): I and J interact inside the non-linearity
        return phi(_flat(inputs, I) + _flat(inputs, J) @ mix)

    penalty = input_gradient_change_penalty(interacting, x, I, J).item()
    assert 0.0 <= penalty < 0.9


def _tiny_conv_model(conv_weight: torch.Tensor, head: torch.Tensor):
    """f(x) = ⟨tanh(conv3×3(x)), head⟩: smooth, so finite differences of the penalty are accurate."""
    return lambda x: torch.tanh(torch.nn.functional.conv2d(x, conv_weight, padding=1)).flatten(1) @ head


def test_penalty_gradient_matches_finite_differences(generator):
    x = _batch(generator, size=4, channels=1)
    conv_weight = torch.randn(2, 1, 3, 3, generator=generator).requires_grad_(True)
    head = torch.randn(2 * 4 * 6, generator=generator).requires_grad_(True)

    def penalty(weight, vector):
        return input_gradient_change_penalty(_tiny_conv_model(weight, vector), x, I, J)

    value = penalty(conv_weight, head)
    assert 0 < value.item() < 1
    grads = torch.autograd.grad(value, (conv_weight, head))
    assert all(torch.isfinite(g).all() and g.abs().sum() > 0 for g in grads)
    assert torch.autograd.gradcheck(penalty, (conv_weight, head), eps=1e-6, atol=1e-6)


def test_penalty_and_logits_share_the_forward_pass(generator):
    x = _batch(generator, size=4, channels=1)
    model = _tiny_conv_model(torch.randn(2, 1, 3, 3, generator=generator), torch.randn(48, generator=generator))
    penalty, logits = penalty_and_logits(model, x, I, J)
    assert penalty.item() == pytest.approx(input_gradient_change_penalty(model, x, I, J).item(), abs=1e-12)
    assert torch.equal(logits, model(x))
    assert not x.requires_grad  # the caller's batch is left alone


def test_penalty_rejects_bad_arguments(generator):
    x = _batch(generator, size=4, channels=1)
    model = _tiny_conv_model(torch.randn(2, 1, 3, 3, generator=generator), torch.randn(48, generator=generator))
    with pytest.raises(ConfigError, match="overlap"):
        input_gradient_change_penalty(model, x, I, Region(0, 2, 2, 2))
    with pytest.raises(ConfigError, match="outside"):
        input_gradient_change_penalty(model, x, I, Region(0, 5, 4, 2))
    with pytest.raises(ConfigError, match="B ≥ 2"):
        input_gradient_change_penalty(model, x[:1], I, J)
    with pytest.raises(ConfigError, match="one logit"):
        input_gradient_change_penalty(lambda v: v.flatten(1), x, I, J)


@pytest.mark.parametrize("stem", ["small", "paper"])
def test_penalty_back_propagates_through_the_resnet(stem, generator):
    model = ResNet18(ResNetConfig((4, 4, 8, 8), stem, 1), generator=generator)
    x = torch.randn(4, 1, 16, 32, generator=generator)
    left, right = Region(0, 0, 16, 16), Region(0, 16, 16, 16)
    penalty, logits = penalty_and_logits(model, x, left, right)
    loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, torch.tensor([0.0, 1, 0, 1]))
    assert 0 < penalty.item() <= 1
    (loss + penalty).backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
    model.zero_grad()
    input_gradient_change_penalty(model, x, left, right).backward()
    assert model.blocks[0].conv1.weight.grad.abs().sum() > 0  # the penalty alone moves the parameters


def _old_penalty(model, x, region_i, region_j, logits, eps=1e-12):
    """The penalty as implemented before the explicit input gradient (generic autograd double back-propagation,
    sharing the loss's forward pass on ``x``, which requires grad), kept verbatim as the reference."""

    def region_gradient(out, inputs):
        (grad,) = torch.autograd.grad(out.sum(), inputs, create_graph=True)
        return grad[..., region_i.rows, region_i.cols].reshape(len(inputs), -1)

    grad = region_gradient(logits.reshape(len(x)), x)
    shifted = x.detach().clone()
    shifted[..., region_j.rows, region_j.cols] = torch.roll(shifted[..., region_j.rows, region_j.cols], -1, dims=0)
    shifted.requires_grad_(True)
    grad_shifted = region_gradient(model(shifted).reshape(len(x)), shifted)
    norms = (grad.norm(dim=1) * grad_shifted.norm(dim=1)).clamp_min(eps)
    return ((grad * grad_shifted).sum(dim=1).abs() / norms).mean()


def _random_resnet(stem: str, generator: torch.Generator, dtype: torch.dtype) -> ResNet18:
    """A small ResNet-18 with random BatchNorm affine parameters (γ ≠ 1, β ≠ 0) and running statistics."""
    model = ResNet18(ResNetConfig((3, 4, 5, 6), stem, 1), generator=generator).to(dtype)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.weight.data.uniform_(0.5, 1.5, generator=generator)
            module.bias.data.normal_(0, 0.3, generator=generator)
            module.running_mean.normal_(0, 0.3, generator=generator)
            module.running_var.uniform_(0.5, 2.0, generator=generator)
    return model


def _reference_forward(model: ResNet18, x: torch.Tensor) -> torch.Tensor:
    """The network's forward pass as before: its nn.Conv2d / nn.BatchNorm2d modules called directly, so that autograd
    uses PyTorch's own backward and double backward of every layer."""
    hidden = model.stem(x)
    for block in model.blocks:
        hidden = torch.relu(block.bn2(block.conv2(torch.relu(block.bn1(block.conv1(hidden))))) + block.shortcut(hidden))
    return model.head(hidden.mean(dim=(-2, -1)))


@pytest.mark.parametrize(
    "stem,train,dtype",
    [
        ("small", True, torch.float64),
        ("paper", True, torch.float64),
        ("small", False, torch.float64),
        ("small", True, torch.float32),
        ("paper", True, torch.float32),
    ],
)
def test_resnet_penalty_equals_the_old_implementation(stem, train, dtype, generator):
    """The explicit input gradient of the ResNet gives the same logits, penalty, parameter gradient of
    BCE + λ·penalty and BatchNorm running statistics as the former implementation (the network's modules, autograd's
    double back-propagation), to float tolerance."""
    reference = _random_resnet(stem, generator, dtype).train(train)
    model = copy.deepcopy(reference)
    assert isinstance(model, ExplicitInputGradient)
    side = 40 if stem == "paper" else 13  # odd and even sizes through the stride-2 layers
    x = torch.rand(6, 1, side, 2 * side + 3, generator=generator, dtype=dtype)
    y = torch.tensor([0.0, 1, 1, 0, 1, 0], dtype=dtype)
    region_i, region_j = Region(0, 0, side, side), Region(0, side + 3, side, side)

    def old_model(inputs):
        return _reference_forward(reference, inputs)

    x_old = x.clone().requires_grad_(True)
    logits_old = old_model(x_old).reshape(-1)
    penalty_old = _old_penalty(old_model, x_old, region_i, region_j, logits_old)
    (torch.nn.functional.binary_cross_entropy_with_logits(logits_old, y) + 3.0 * penalty_old).backward()

    penalty, logits = penalty_and_logits(model, x, region_i, region_j)
    (torch.nn.functional.binary_cross_entropy_with_logits(logits, y) + 3.0 * penalty).backward()

    # float32: gradients relative to their largest entry within 1e-4 (rounding, amplified by the double backward)
    tolerance = {"rtol": 1e-9, "atol": 1e-12} if dtype == torch.float64 else {"rtol": 1e-4, "atol": 1e-4}
    torch.testing.assert_close(logits, logits_old.detach(), **tolerance)
    torch.testing.assert_close(penalty, penalty_old.detach(), **tolerance)
    assert 0 < penalty.item() < 1
    for (name, old), new in zip(reference.named_parameters(), model.parameters()):
        scale = old.grad.abs().max()
        torch.testing.assert_close(new.grad / scale, old.grad / scale, **tolerance, msg=name)
    for (name, old), new in zip(reference.named_buffers(), model.buffers()):
        torch.testing.assert_close(new, old, **tolerance, msg=name)


def test_float32_penalty_gradient_is_accurate_on_small_patches():
    """On Pathfinder-like inputs with 2 × 2 patches (the input gradient at a patch is a small difference of large
    terms) the float32 parameter gradient of BCE + 3·penalty, with weights and inputs laid out as training lays them
    out (``MEMORY_FORMAT``, ``as_input``), stays within 1e-3 of the float64 one (channel-first kernels: ≈ 2e-5;
    channels-last, whose CPU BatchNorm accumulates its statistics less accurately, gave 0.14)."""
    from rankrepro.cnn.locality_training import MEMORY_FORMAT, as_input
    from rankrepro.cnn.pathfinder import default_settings, generate

    rng = np.random.default_rng(0)
    images, labels = generate(64, 3, default_settings(32, 3), rng)
    x, y = torch.from_numpy(images[:, None]), torch.from_numpy(labels).double()
    region_i, region_j = random_patch_pair((32, 32), 2, rng)
    model = ResNet18(ResNetConfig(SMALL_WIDTHS, "small", 1), generator=torch.Generator().manual_seed(0))

    def gradient(dtype):
        net = copy.deepcopy(model).to(dtype=dtype, memory_format=MEMORY_FORMAT)
        penalty, logits = penalty_and_logits(net, as_input(x, next(net.parameters())), region_i, region_j)
        (torch.nn.functional.binary_cross_entropy_with_logits(logits, y.to(dtype)) + 3 * penalty).backward()
        return torch.cat([p.grad.flatten().double() for p in net.parameters()])

    exact = gradient(torch.float64)
    assert (gradient(torch.float32) - exact).norm() / exact.norm() < 1e-3


def test_resnet_input_gradient_equals_autograd(generator):
    """logits_and_input_gradient is ∇_x Σ_b f_b(x) of the network's own forward pass, BatchNorm in train mode."""
    model = _random_resnet("small", generator, torch.float64)
    x = torch.rand(5, 1, 12, 17, generator=generator)
    logits, grad = copy.deepcopy(model).logits_and_input_gradient(x)
    logits_ref, grad_ref = autograd_logits_and_input_gradient(model, x)
    assert torch.equal(logits, logits_ref)
    torch.testing.assert_close(grad, grad_ref, rtol=1e-10, atol=1e-13)


def test_batch_norm_input_gradient_backward_matches_finite_differences(generator):
    """The hand-written backward of the train-mode BatchNorm input gradient, w.r.t. dy, x (through the batch
    statistics too) and γ, against finite differences."""
    dy = torch.randn(3, 2, 4, 5, generator=generator, requires_grad=True)
    x = torch.randn(3, 2, 4, 5, generator=generator, requires_grad=True)
    weight = torch.tensor([0.7, -1.3], requires_grad=True)

    def input_gradient(dy, x, weight):
        _, mean, invstd = torch.native_batch_norm(x.detach(), weight.detach(), None, None, None, True, 0.0, 1e-3)
        # the statistics as functions of x: only their values enter the Function, whose backward covers their
        # dependence on x; recompute them from x.detach() so that gradcheck perturbs them consistently
        return BatchNormInputGradient.apply(dy, x, weight, mean, invstd, 1e-3)

    assert torch.autograd.gradcheck(input_gradient, (dy, x, weight), eps=1e-6, atol=1e-6)
    bn = torch.nn.BatchNorm2d(2, eps=1e-3).double()
    bn.weight.data = weight.detach().clone()
    _, stats = batch_norm(bn, x.detach())
    expected = torch.autograd.grad(bn(x), x, dy.detach())[0]
    torch.testing.assert_close(BatchNormInputGradient.apply(dy, x, bn.weight, *stats, 1e-3), expected)


@pytest.mark.parametrize("momentum,track", [(0.1, True), (None, True), (0.1, False)])
def test_batch_norm_matches_the_module(momentum, track, generator):
    """batch_norm gives nn.BatchNorm2d's output and running-statistics update in train mode (exponential or
    cumulative average, or none), with the batch statistics it used; in eval mode the module's output and no
    statistics."""
    x = torch.randn(4, 3, 5, 6, generator=generator) * 2 + 1
    module = torch.nn.BatchNorm2d(3, momentum=momentum, track_running_stats=track).double()
    module.weight.data.uniform_(0.5, 1.5, generator=generator)
    twin = copy.deepcopy(module)
    for _ in range(2):
        expected = module(x)
        y, stats = batch_norm(twin, x)
        assert torch.equal(y, expected)
    assert all(torch.equal(a, b) for a, b in zip(module.buffers(), twin.buffers()))
    torch.testing.assert_close(stats.mean, x.mean(dim=(0, 2, 3)))
    torch.testing.assert_close(stats.invstd, 1 / torch.sqrt(x.var(dim=(0, 2, 3), unbiased=False) + module.eps))
    if track:
        y, stats = batch_norm(twin.eval(), x)
        assert stats is None and torch.equal(y, module.eval()(x))


def test_same_convolution_and_its_gradients_match_conv2d(generator):
    """SameConvolution: the values of nn.Conv2d, and first and second derivatives w.r.t. input and weight equal to
    those of torch's own convolution (its input gradient is a convolution with the flipped weight)."""
    conv = torch.nn.Conv2d(3, 4, 3, padding=1, bias=False).double()
    x = torch.randn(2, 3, 5, 6, generator=generator, requires_grad=True)
    assert torch.equal(SameConvolution.apply(x, conv.weight, conv.padding), conv(x))
    assert torch.autograd.gradcheck(lambda a, w: SameConvolution.apply(a, w, (1, 1)), (x, conv.weight))
    assert torch.autograd.gradgradcheck(lambda a, w: SameConvolution.apply(a, w, (1, 1)), (x, conv.weight))


@pytest.mark.parametrize("side", [7, 8])
def test_conv_input_gradient_restores_the_input_size(side, generator):
    block = BasicBlock(2, 3, stride=2).double()
    for conv in (block.conv1, block.conv2, block.shortcut[0]):
        x = torch.randn(2, conv.in_channels, side, side + 1, generator=generator)
        dy = torch.randn_like(conv(x))
        expected = torch.autograd.grad(conv(x.requires_grad_(True)), x, dy)[0]
        torch.testing.assert_close(conv_input_gradient(conv, dy, x.shape), expected)


def test_canvas_geometry():
    rng = np.random.default_rng(0)
    images = rng.integers(1, 256, size=(5, 4, 3), dtype=np.uint8)  # no zero pixel: the background is recognisable
    pairs = np.array([[0, 1, 0], [2, 2, 1], [4, 3, 0]])
    canvases, first, second = canvas_images(images, pairs, 2, (8, 14))
    assert canvases.shape == (3, 1, 8, 14) and canvases.dtype == np.uint8
    # pair width 3 + 2 + 3 = 8 centred in 14 columns: columns 3–5 and 8–10; rows 2–5 of 8
    assert first == Region(2, 3, 4, 3) and second == Region(2, 8, 4, 3)
    for canvas, (i, j, _) in zip(canvases, pairs):
        assert np.array_equal(canvas[0, 2:6, 3:6], images[i]) and np.array_equal(canvas[0, 2:6, 8:11], images[j])
    inside = first.mask((8, 14)) | second.mask((8, 14))
    assert (canvases[:, :, ~inside] == 0).all() and (canvases[:, :, inside] > 0).all()
    assert (canvases[:, :, :, 6:8] == 0).all()  # the gap of 2 columns
    flush, a, b = canvas_images(images, pairs, 8, (4, 14))  # exactly fills the width
    assert a == Region(0, 0, 4, 3) and b == Region(0, 11, 4, 3) and (flush[:, :, :, 3:11] == 0).all()
    with pytest.raises(ConfigError, match="do not fit"):
        canvas_images(images, pairs, 9, (8, 14))
    with pytest.raises(ConfigError, match="do not fit"):
        canvas_images(images, pairs, 0, (3, 14))


def test_rgb_canvases_are_channel_first():
    images = np.random.default_rng(1).integers(0, 256, size=(3, 2, 2, 3), dtype=np.uint8)
    canvases, first, second = canvas_images(images, np.array([[0, 2], [1, 0]]), 1, (4, 7))
    assert canvases.shape == (2, 3, 4, 7)
    assert np.array_equal(canvases[0][:, first.rows, first.cols], images[0].transpose(2, 0, 1))
    assert np.array_equal(canvases[1][:, second.rows, second.cols], images[0].transpose(2, 0, 1))
    with pytest.raises(ConfigError, match="uint8"):
        canvas_images(images.astype(np.float32), np.array([[0, 1]]), 0, (4, 7))


def test_choose_pair_draws_both_orders():
    regions = [Region(0, 0, 2, 2), Region(0, 4, 2, 2)]
    draws = [choose_pair(regions, np.random.default_rng(seed)) for seed in range(20)]
    assert {draws[k][0] for k in range(20)} == set(regions) and all(a != b for a, b in draws)
    assert choose_pair(regions, np.random.default_rng(7)) == choose_pair(regions, np.random.default_rng(7))
    with pytest.raises(ConfigError):
        choose_pair(regions[:1], np.random.default_rng(0))


def test_random_patch_pair_is_seeded_and_disjoint():
    first = random_patch_pair((15, 20), 2, np.random.default_rng(5))
    assert first == random_patch_pair((15, 20), 2, np.random.default_rng(5))
    draws = [random_patch_pair((15, 20), 2, np.random.default_rng(seed), gap=3) for seed in range(50)]
    assert len(set(draws)) > 40
    for a, b in draws:
        assert a.height == a.width == b.height == b.width == 2
        assert 0 <= min(a.top, b.top) and max(a.top, b.top) + 2 <= 15 and max(a.left, b.left) + 2 <= 20
        row_gap = max(a.top, b.top) - min(a.top, b.top) - 2
        col_gap = max(a.left, b.left) - min(a.left, b.left) - 2
        assert max(row_gap, col_gap) >= 3
    a, b = random_patch_pair((2, 4), 2, np.random.default_rng(0))  # only two disjoint positions
    assert {a.left, b.left} == {0, 2}
    with pytest.raises(ConfigError):
        random_patch_pair((2, 3), 2, np.random.default_rng(0))
    with pytest.raises(ConfigError):
        random_patch_pair((2, 3), 4, np.random.default_rng(0))


@pytest.mark.parametrize(
    "config,shape",
    [
        (ResNetConfig(SMALL_WIDTHS, "small", 1), (3, 1, 16, 96)),
        (ResNetConfig(PAPER_WIDTHS, "paper", 3), (2, 3, 32, 32)),
    ],
)
def test_resnet_output_shape_and_seeded_init(config, shape, generator):
    model = ResNet18(config, generator=torch.Generator().manual_seed(0))
    assert model(torch.randn(*shape, generator=generator)).shape == (shape[0], 1)
    same = ResNet18(config, generator=torch.Generator().manual_seed(0))
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), same.parameters()))
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 1 + 16 + 3  # stem, two per block, three 1×1 shortcuts


def test_resnet_config_is_validated():
    with pytest.raises(ConfigError, match="stem"):
        ResNetConfig(stem="tiny")
    with pytest.raises(ConfigError, match="widths"):
        ResNetConfig(widths=(8, 16, 32))
    with pytest.raises(ConfigError, match="channels"):
        ResNetConfig(in_channels=2)


def test_receptive_field_by_hand():
    # paper: 7×7/2 → 7 (jump 2); max-pool 3/2 → 11 (jump 4); stage 1: 4 convs × 2·4 → 43; stage 2: +2·4, jump 8,
    # +3·2·8 → 99; stage 3: +2·8, jump 16, +3·2·16 → 211; stage 4: +2·16, jump 32, +3·2·32 → 435
    assert receptive_field(ResNetConfig(PAPER_WIDTHS, "paper")) == 435
    # small: 3 → stage 1 +4·2 = 11 → stage 2 +2 (jump 2) +3·4 = 25 → stage 3 +4 (jump 4) +3·8 = 53
    # → stage 4 +8 (jump 8) +3·16 = 109: covers a 16 × 96 canvas
    assert receptive_field(ResNetConfig(SMALL_WIDTHS, "small")) == 109
    assert receptive_field(ResNetConfig((1, 1, 1, 1), "small")) == 109  # widths do not matter
    assert len(conv_layout(ResNetConfig(stem="paper"))) == 18 and len(conv_layout(ResNetConfig(stem="small"))) == 17


def test_receptive_field_matches_the_gradient_support():
    """With positive weights, BN in eval mode and a positive input every ReLU is active, so the support of the
    gradient of one output unit w.r.t. the input is exactly its receptive field."""
    model = ResNet18(ResNetConfig((2, 2, 2, 2), "small", 1)).eval()
    for module in model.modules():
        if isinstance(module, torch.nn.Conv2d):
            torch.nn.init.constant_(module.weight, 0.1)
    x = torch.ones(1, 1, 128, 128, requires_grad=True)
    features = model.features(x)
    assert features.shape[-2:] == (16, 16)
    (grad,) = torch.autograd.grad(features[0, 0, 8, 8], x)
    rows, cols = np.nonzero(grad[0, 0].numpy())
    assert rows.max() - rows.min() + 1 == cols.max() - cols.min() + 1 == 109
    assert (grad[0, 0, rows.min() : rows.max() + 1, cols.min() : cols.max() + 1] > 0).all()
