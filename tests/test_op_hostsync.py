"""No host sync from SAU in a training step: the in-place op decides in place vs out of place from alpha's range
as the host last saw it, copied without a device sync (sau_core.op._AlphaRange).

The GPU's asynchronous path runs here on CPU tensors: sau_core.op.ASYNC_DEVICES gets 'cpu' and the CUDA event
is replaced by a fake one whose query() the test controls. Every host read (Tensor.item, tolist, __bool__, ...)
is counted, except those of the host copies the reader made (pinned host memory on a GPU: reading them does not
wait for the device), and so is every wait on an event."""
import warnings

import pytest
import torch

import sau_core
from sau_core import SAU, op

READS = ('item', 'tolist', '__bool__', '__float__', '__int__', '__index__', 'numpy')


class FakeEvent:
    arrived = True  # whether query() says the copy has arrived
    waits = 0

    def query(self):
        return FakeEvent.arrived

    def synchronize(self):
        FakeEvent.waits += 1


@pytest.fixture
def counted_reads(monkeypatch):
    monkeypatch.setattr(op, 'ASYNC_DEVICES', {'cpu'})
    monkeypatch.setattr(op, '_CudaEvent', FakeEvent)
    monkeypatch.setattr(FakeEvent, 'arrived', True)
    monkeypatch.setattr(FakeEvent, 'waits', 0)
    reads = []
    for name in READS:
        original = getattr(torch.Tensor, name)

        def counted(self, *args, _original=original, _name=name, **kwargs):
            if not getattr(self, '_sau_host_copy', False):
                reads.append(_name)
            return _original(self, *args, **kwargs)
        monkeypatch.setattr(torch.Tensor, name, counted)
    return reads


def make_model(channels=8, blocks=3):
    torch.manual_seed(0)
    layers = [torch.nn.Conv2d(3, channels, 3, padding=1)]
    for _ in range(blocks):
        layers += [torch.nn.BatchNorm2d(channels), SAU(num_parameters=channels, inplace=True),
                   torch.nn.Conv2d(channels, channels, 3, padding=1)]
    model = torch.nn.Sequential(*layers)
    sau_core.name_sau_layers(model)
    return model


def test_a_training_step_reads_nothing_on_the_host(counted_reads):
    model = make_model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    x = torch.randn(2, 3, 8, 8)
    saved_inputs = []

    def step():
        optimizer.zero_grad()
        with torch.autograd.graph.saved_tensors_hooks(lambda t: saved_inputs.append(t) or t, lambda t: t):
            loss = model(x).square().mean()
        loss.backward()
        optimizer.step()

    step()  # the first call of each layer waits for its copy once
    assert FakeEvent.waits == 3
    counted_reads.clear()
    for _ in range(3):
        step()
    assert counted_reads == [] and FakeEvent.waits == 3
    # and the layers did run in place: each keeps its output only (conv, BN and SAU keep 4 tensors of the
    # feature map's size per block, 5 out of place)
    assert all(module.alpha.grad is not None for module in model if isinstance(module, SAU))


def test_the_decision_lags_until_the_copy_arrives_then_falls_back_and_warns_once(counted_reads, recwarn):
    module = SAU(inplace=True)
    module.layer_name = 'net.act'
    warnings.simplefilter('always')
    h = torch.randn(4, 5) * 1
    assert module(h) is h  # first call: waits for the copy, alpha 0.15 is in range
    module.alpha.data.fill_(op.INPLACE_ALPHA_RANGE[1] * 2)
    FakeEvent.arrived = False  # the copy of alpha's new value has not arrived: still in place (one step late)
    h = torch.randn(4, 5) * 1
    assert module(h) is h
    FakeEvent.arrived = True  # the copy that call enqueued (alpha 200) has arrived: out of place, one warning
    for _ in range(3):
        h = torch.randn(4, 5) * 1
        assert module(h) is not h
    messages = [str(w.message) for w in recwarn if issubclass(w.category, RuntimeWarning)]
    assert len(messages) == 1 and "in-place SAU 'net.act': alpha left [0.01, 100] (min 200, max 200)" in messages[0]
    assert counted_reads == [] and FakeEvent.waits == 1


def test_results_match_the_out_of_place_op_on_the_asynchronous_path(counted_reads):
    x = torch.randn(2, 4, 6, 6)
    grads = []
    for inplace in (True, False):
        module = SAU(num_parameters=4, inplace=inplace)
        leaf = x.clone().requires_grad_()
        module(leaf * 1).sum().backward()
        grads.append((leaf.grad, module.alpha.grad))
    torch.testing.assert_close(grads[0][0], grads[1][0])
    torch.testing.assert_close(grads[0][1], grads[1][1])


def test_cpu_reads_its_range_at_every_call_without_waiting():
    """Off the asynchronous devices (CPU), a read is a memory read: the decision follows alpha at once."""
    assert 'cpu' not in op.ASYNC_DEVICES
    module = SAU(inplace=True)
    h = torch.randn(3) * 1
    assert module(h) is h
    module.alpha.data.fill_(0.0)
    h = torch.randn(3) * 1
    with pytest.warns(RuntimeWarning, match='alpha left'):
        assert module(h) is not h
