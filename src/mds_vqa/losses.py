"""The fidelity loss of the failure predictor (pairwise learning-to-rank, Thurstone model with unit variances)."""

from __future__ import annotations

import torch

__all__ = ["FIDELITY_EPS", "pair_probability", "fidelity_loss"]

FIDELITY_EPS = 1e-6


def pair_probability(g_x: torch.Tensor, g_y: torch.Tensor) -> torch.Tensor:
    """``p̂ = Φ((g(x) − g(y)) / √2)``: the probability that x is harder than y under unit-variance Gaussians."""
    return 0.5 * (1.0 + torch.erf((g_x - g_y) / 2.0))  # Φ(z/√2) = ½(1 + erf(z/2))


def fidelity_loss(g_x: torch.Tensor, g_y: torch.Tensor, p: torch.Tensor, eps: float = FIDELITY_EPS) -> torch.Tensor:
    """Mean fidelity loss ``1 − √(p·p̂ + ε) − √((1−p)(1−p̂) + ε)`` with ``p̂ = Φ((g(x) − g(y))/√2)``.

    ``p`` is the label (1 when f errs at least as much on x as on y); ε keeps the gradient finite at p̂ ∈ {0, 1}.
    """
    g_x, g_y = torch.as_tensor(g_x), torch.as_tensor(g_y)
    p = torch.as_tensor(p, dtype=g_x.dtype, device=g_x.device)
    if not (g_x.shape == g_y.shape == p.shape):
        raise ValueError(
            f"fidelity_loss needs equal shapes, got g_x {tuple(g_x.shape)}, g_y {tuple(g_y.shape)}, p {tuple(p.shape)}"
        )
    if g_x.numel() == 0:
        raise ValueError("fidelity_loss got no pairs")
    p_hat = pair_probability(g_x, g_y)
    loss = 1.0 - torch.sqrt(p * p_hat + eps) - torch.sqrt((1.0 - p) * (1.0 - p_hat) + eps)
    return loss.mean()
