"""The SAU module, the activation table, bad input, and the MMEngine registration."""
import pytest
import torch

from sau_core import ACT_CFGS, SAU, act_cfg, create_act_layer, sau


def test_module_parameters_and_state_dict():
    module = SAU(alpha=0.2, n=100.0, num_parameters=4)
    assert [name for name, _ in module.named_parameters()] == ['alpha']
    assert module.alpha.tolist() == pytest.approx([0.2] * 4)
    assert set(module.state_dict()) == {'alpha', 'n'} and module.n.item() == 100.0
    trainable = SAU(trainable_n=True)
    assert {name for name, _ in trainable.named_parameters()} == {'alpha', 'n'}
    assert 'trainable_n=True' in repr(trainable) and 'num_parameters=4' in repr(module)


def test_trainable_n_and_per_channel_alpha_learn():
    torch.manual_seed(0)
    module = SAU(num_parameters=3, n=5.0, trainable_n=True)
    x = torch.randn(16, 3, 4)
    module(x).sum().backward()
    assert module.alpha.grad.shape == (3,) and module.alpha.grad.abs().min() > 0
    assert module.n.grad.shape == () and module.n.grad.item() != 0


def test_module_follows_device_and_dtype():
    module = SAU(num_parameters=2).double()
    y = module(torch.randn(3, 2, dtype=torch.float64))
    assert y.dtype == torch.float64
    half = SAU().to(torch.bfloat16)
    assert half(torch.randn(5, dtype=torch.bfloat16)).dtype == torch.bfloat16


def test_inplace_module_overwrites_its_input():
    x = torch.randn(4)
    expected = sau(x)
    module = SAU(inplace=True)
    assert module(x) is x and 'inplace=True' in repr(module)
    torch.testing.assert_close(x, expected)
    other = torch.randn(4)
    assert SAU()(other) is not other


@pytest.mark.parametrize('call, message', [
    (lambda: sau(torch.arange(4)), 'floating-point tensor'),
    (lambda: sau(torch.randn(2, 3, 4), torch.full((4,), 0.1)), '4 per-channel alphas'),
    (lambda: sau(torch.randn(5), torch.full((5,), 0.1)), 'no channels'),
    (lambda: sau(torch.randn(2, 3), 0.15, 0.0), 'n > 0'),
    (lambda: sau(torch.randn(2, 3), 0.15, -1.0), 'n > 0'),
    (lambda: SAU(n=0), 'n > 0'),
    (lambda: SAU(num_parameters=0), 'num_parameters'),
    (lambda: sau(torch.randn(2, 3), torch.tensor([0.1], device='meta')), 'is on meta but the input is on cpu'),
    (lambda: sau(torch.randn(2, 3), torch.tensor([1], dtype=torch.int64)), 'alpha must be a floating-point'),
    (lambda: sau(torch.randn(2, 3), 0.15, torch.ones(2)), 'n must be a single value'),
    (lambda: act_cfg('swishh'), "unknown activation 'swishh'; choose one of: relu, swish"),
])
def test_bad_input_gives_a_clear_value_error(call, message):
    with pytest.raises(ValueError, match=message.replace('(', r'\(').replace(')', r'\)')):
        call()


@pytest.mark.parametrize('name', list(ACT_CFGS))
def test_every_paper_activation_builds_a_fresh_module(name):
    first, second = create_act_layer(name), create_act_layer(name)
    assert isinstance(first, torch.nn.Module) and first is not second
    x = torch.linspace(-2, 2, 9).reshape(1, 9)
    assert first(x).shape == x.shape
    assert create_act_layer(None) is None


def test_leaky_relu_uses_the_papers_slope():
    assert create_act_layer('leaky_relu').negative_slope == 0.01


def test_mmcv_builds_sau_from_act_cfg():
    cnn = pytest.importorskip('mmcv.cnn')
    import sau_core.mm  # noqa: F401  (registers SAU and Softplus)
    conv = cnn.ConvModule(3, 8, 3, act_cfg=dict(type='SAU', alpha=0.3, num_parameters=8))
    assert isinstance(conv.activate, SAU) and conv.activate.alpha.shape == (8,)
    assert conv(torch.randn(1, 3, 6, 6)).shape == (1, 8, 4, 4)
    for name in ACT_CFGS:  # every paper activation goes through ConvModule, which passes inplace=True
        assert cnn.ConvModule(3, 4, 1, act_cfg=act_cfg(name))(torch.randn(1, 3, 2, 2)).shape == (1, 4, 2, 2)
    from mmdet.registry import MODELS as MMDET_MODELS
    from mmseg.registry import MODELS as MMSEG_MODELS
    assert isinstance(MMDET_MODELS.build(dict(type='SAU')), SAU)
    assert isinstance(MMSEG_MODELS.build(dict(type='SAU')), SAU)


CASTS = {
    'half': lambda m: m.half(), 'bfloat16': lambda m: m.bfloat16(), 'double': lambda m: m.double(),
    'to(bfloat16)': lambda m: m.to(torch.bfloat16), 'to(cpu, float16)': lambda m: m.to('cpu', torch.float16),
    'type(float64)': lambda m: m.type(torch.float64),
}


@pytest.mark.parametrize('cast', list(CASTS))
def test_dtype_casts_leave_a_fixed_n_exactly_20000(cast):
    """n is a hyper-parameter: a bf16 n would be 19968. The buffer stays fp32 (and its state-dict key 'n')."""
    module = CASTS[cast](SAU(num_parameters=3))
    assert module.n.dtype == torch.float32 and module.n.item() == 20000.0
    assert module.alpha.dtype != torch.float32
    assert list(module.state_dict()) == ['alpha', 'n'] and module.state_dict()['n'].item() == 20000.0
    x = (torch.randn(4, 3, 5, generator=torch.Generator().manual_seed(0)) * 2e-4).to(module.alpha.dtype)
    expected = sau(x, module.alpha.detach(), 20000.0)
    assert torch.equal(module(x).detach(), expected)
    if module.alpha.dtype == torch.bfloat16:  # what the cast used to do to n changes the output
        assert not torch.equal(sau(x, module.alpha.detach(), 19968.0), expected)
    SAU(num_parameters=3).load_state_dict(module.state_dict(), strict=True)


def test_device_moves_still_move_n_and_trainable_n_casts_like_a_parameter():
    module = SAU().to('meta', torch.float16)
    assert module.n.device.type == 'meta' and module.n.dtype == torch.float32
    trainable = SAU(trainable_n=True).bfloat16()
    assert trainable.n.dtype == torch.bfloat16 and trainable.n.item() == 19968.0
    assert 'n=20000' in repr(SAU().half())


def test_name_sau_layers_stores_qualified_names():
    import sau_core
    model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Sequential(SAU(), torch.nn.ReLU(), SAU()))
    assert sau_core.name_sau_layers(model) == ['1.0', '1.2'] and model[1][2].layer_name == '1.2'
    assert sau_core.name_sau_layers(SAU()) == ['SAU']


def test_n_at_most_zero_is_rejected_when_built_loaded_or_trained():
    with pytest.raises(ValueError, match=r'the state dict has n=-1\.0'):
        SAU().load_state_dict({'alpha': torch.tensor([0.1]), 'n': torch.tensor(-1.0)})
    trainable = SAU(n=3.0, trainable_n=True)
    trainable.n.data.fill_(0.0)  # e.g. a training step pushed it there: checked on every call
    with pytest.raises(ValueError, match='n > 0'):
        trainable(torch.randn(4))
