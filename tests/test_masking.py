import pytest
import torch

from audiomae.masking import (
    freq_mask,
    from_bool_mask,
    packet_loss_mask,
    random_mask,
    time_freq_mask,
    time_mask,
)


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def check_consistent(m):
    b, n = m.mask.shape
    for i in range(b):
        kept = m.keep_idx[i][m.keep_valid[i]]
        assert torch.equal(kept, (~m.mask[i]).nonzero().flatten())
        # restore_idx undoes the [visible, masked] ordering.
        order = torch.cat([kept, m.mask[i].nonzero().flatten()])
        assert torch.equal(order[m.restore_idx[i]], torch.arange(n))


def test_random_mask_ratio_and_per_item():
    m = random_mask(4, 50, 5, 0.8, gen())
    assert m.mask.shape == (4, 250)
    assert (m.mask.sum(1) == 200).all()
    assert not torch.equal(m.mask[0], m.mask[1])
    assert not m.ragged
    check_consistent(m)


def test_seeded_and_pure():
    assert torch.equal(random_mask(2, 10, 5, 0.5, gen(3)).mask, random_mask(2, 10, 5, 0.5, gen(3)).mask)


def test_time_and_freq_masks_are_structured():
    m = time_mask(2, 10, 5, 0.3, gen()).mask.view(2, 10, 5)
    assert ((m.all(2)) | (~m.any(2))).all() and (m.all(2).sum(1) == 3).all()
    f = freq_mask(2, 10, 5, 0.4, gen()).mask.view(2, 10, 5)
    assert ((f.all(1)) | (~f.any(1))).all() and (f.all(1).sum(1) == 2).all()
    tf = time_freq_mask(2, 10, 5, 0.3, 0.2, gen())
    assert tf.mask.view(2, 10, 5).any(2).sum(1).min() >= 3
    check_consistent(tf)


def test_packet_loss_mask_ragged():
    lost = torch.zeros(2, 8, dtype=torch.bool)
    lost[0, 2] = True
    lost[1, 4:7] = True
    m = packet_loss_mask(lost, grid_f=5)
    assert m.ragged
    assert m.mask.view(2, 8, 5)[0, 2].all() and m.mask.sum().item() == 20
    assert m.keep_valid.sum(1).tolist() == [35, 25]
    check_consistent(m)


def test_errors():
    with pytest.raises(ValueError, match="ratio"):
        random_mask(1, 4, 4, 1.0)
    with pytest.raises(ValueError, match="visible"):
        from_bool_mask(torch.ones(1, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match="shape"):
        packet_loss_mask(torch.zeros(1, 2, 3), 5)
