import math

import pytest
import torch

from mds_vqa.losses import fidelity_loss, pair_probability


def _phi(z):
    return 0.5 * (1 + math.erf(z / math.sqrt(2)))


def _by_hand(gx, gy, p, eps=1e-6):
    ph = _phi((gx - gy) / math.sqrt(2))
    return 1 - math.sqrt(p * ph + eps) - math.sqrt((1 - p) * (1 - ph) + eps)


def test_pair_probability_is_phi_of_the_gap_over_sqrt2():
    for gap in (-3.0, -0.5, 0.0, 0.7, 2.0):
        assert float(pair_probability(torch.tensor(gap), torch.tensor(0.0))) == pytest.approx(
            _phi(gap / math.sqrt(2)), abs=1e-7
        )


@pytest.mark.parametrize(
    "gx, gy, p",
    [
        (3.0, 3.0, 1.0),
        (3.0, 3.0, 0.0),
        (3.0, 3.0, 0.5),
        (4.5, 1.0, 1.0),
        (4.5, 1.0, 0.0),
        (1.0, 5.0, 1.0),
        (2.2, 2.0, 0.3),
    ],
)
def test_fidelity_loss_matches_the_formula_by_hand(gx, gy, p):
    got = fidelity_loss(torch.tensor([gx]), torch.tensor([gy]), torch.tensor([p]))
    assert float(got) == pytest.approx(_by_hand(gx, gy, p), abs=1e-6)


def test_equal_g_costs_one_minus_sqrt_half_for_a_hard_label():
    assert float(fidelity_loss(torch.tensor([2.0]), torch.tensor([2.0]), torch.tensor([1.0]))) == pytest.approx(
        1 - math.sqrt(0.5 + 1e-6) - math.sqrt(1e-6), abs=1e-7
    )


def test_a_large_correct_gap_costs_almost_nothing_and_a_wrong_one_almost_one():
    right = float(fidelity_loss(torch.tensor([50.0]), torch.tensor([0.0]), torch.tensor([1.0])))
    wrong = float(fidelity_loss(torch.tensor([0.0]), torch.tensor([50.0]), torch.tensor([1.0])))
    assert right == pytest.approx(1 - math.sqrt(1 + 1e-6) - math.sqrt(1e-6), abs=1e-6) and right < 1e-2
    assert wrong == pytest.approx(1 - 2 * math.sqrt(1e-6), abs=1e-6)


def test_loss_is_the_mean_over_pairs():
    gx, gy, p = torch.tensor([1.0, 4.0, 2.5]), torch.tensor([3.0, 2.0, 2.5]), torch.tensor([1.0, 1.0, 0.0])
    expected = sum(_by_hand(a, b, c) for a, b, c in zip(gx.tolist(), gy.tolist(), p.tolist())) / 3
    assert float(fidelity_loss(gx, gy, p)) == pytest.approx(expected, abs=1e-6)


def test_gradient_pushes_g_of_the_harder_video_up():
    gx = torch.tensor([2.0], requires_grad=True)
    gy = torch.tensor([3.0], requires_grad=True)
    fidelity_loss(gx, gy, torch.tensor([1.0])).backward()  # label: x is the harder one
    assert gx.grad.item() < 0 < gy.grad.item()  # gradient descent raises g(x), lowers g(y)


def test_gradient_stays_finite_when_the_prediction_saturates():
    gx = torch.tensor([100.0], requires_grad=True)
    gy = torch.tensor([0.0], requires_grad=True)
    fidelity_loss(gx, gy, torch.tensor([0.0])).backward()
    assert torch.isfinite(gx.grad).all() and torch.isfinite(gy.grad).all()


def test_shape_mismatch_and_empty_input_are_errors():
    with pytest.raises(ValueError, match="equal shapes"):
        fidelity_loss(torch.zeros(2), torch.zeros(3), torch.zeros(2))
    with pytest.raises(ValueError, match="no pairs"):
        fidelity_loss(torch.zeros(0), torch.zeros(0), torch.zeros(0))
