import torch
from torch._subclasses.fake_tensor import FakeTensorMode

from seqbench.measure.allocations import AllocationTracker


def test_tracker_counts_live_and_peak_bytes_of_real_tensors() -> None:
    tracker = AllocationTracker()
    with tracker:
        a = torch.ones(1000, 250)  # 1e6 bytes
        b = a * 2  # another 1e6
        assert tracker.live_bytes == 2_000_000
        del b
        assert tracker.live_bytes == 1_000_000
        view = a[:10]  # a view shares storage: no new bytes
        assert tracker.live_bytes == 1_000_000
        del view
    assert tracker.peak_bytes == 2_000_000


def test_tracker_predicts_the_same_peak_under_fake_tensors() -> None:
    def step(tracker: AllocationTracker) -> int:
        with tracker:
            x = torch.zeros(300, 200, requires_grad=True)
            (x @ x.T).square().sum().backward()
        return tracker.peak_bytes

    real = step(AllocationTracker())
    with FakeTensorMode():
        fake = step(AllocationTracker())
    assert real == fake > 300 * 200 * 4


def test_reset_peak_restarts_from_live_bytes() -> None:
    tracker = AllocationTracker()
    with tracker:
        keep = torch.ones(100)
        temp = torch.ones(1000)
        del temp
        assert tracker.reset_peak() == 4400
        assert tracker.peak_bytes == tracker.live_bytes == 400
        del keep


def test_adopted_tensors_are_live_once_even_through_in_place_operators() -> None:
    param = torch.ones(1000, 250)  # 1e6 bytes, made before the tracker (like a model's weights)
    tracker = AllocationTracker()
    tracker.adopt([param, param[:5]])  # a view of an adopted storage adds nothing
    assert tracker.live_bytes == 1_000_000
    with tracker:
        param.mul_(0.5)  # Adam's in-place update returns the same storage: not a new allocation
        update = param * 2
        del update
    assert tracker.peak_bytes == 2_000_000
    unadopted = AllocationTracker()
    with unadopted:
        param.mul_(0.5)
    assert unadopted.peak_bytes == 1_000_000  # what a tracker without adopt() got wrong: 1e6 "new" bytes
