"""A fixed Gaussian perturbation of the language model's weights, for the ``noise_stability`` selection baseline.

Noise stability (deep active learning via noise stability) ranks a video by how much the model's output moves when
its weights are perturbed by small random noise: the more a score moves, the less the model has settled on it.
:func:`weight_noise` perturbs every linear layer of the language model (the layers LoRA adapts:
:data:`mds_vqa.modeling.LANGUAGE_MODEL_LORA_REGEX`; not the vision tower, not the LM head) by
``noise = std · W.std() · ε``, with ``ε`` a standard Gaussian drawn from a generator seeded from ``(seed, layer
index)``: the same draw for every batch and every process on the same kind of device (CPU and CUDA generators draw
different numbers).

The weights are never written: a forward hook adds ``F.linear(input, noise)`` to each layer's output, so leaving the
context removes the hooks and the model is exactly what it was. A layer wrapped by a PEFT adapter is perturbed around
its base weight (the adapter's own update is kept as it is). The noise tensors (one per layer, on the layer's device,
in its dtype: as much memory as the language model's linear weights) are drawn once when the context is entered and
freed on exit.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch
import torch.nn.functional as F

from .modeling import LANGUAGE_MODEL_LORA_REGEX

__all__ = ["noise_layers", "weight_noise"]


def _linear_weight(module: torch.nn.Module) -> torch.Tensor | None:
    """The weight of a linear layer, or of the linear base layer a PEFT adapter wraps; ``None`` for anything else."""
    if isinstance(module, torch.nn.Linear):
        return module.weight
    base = getattr(module, "base_layer", None)
    if isinstance(base, torch.nn.Linear):
        return base.weight
    return None


def noise_layers(model: torch.nn.Module) -> list[tuple[str, torch.nn.Module, torch.Tensor]]:
    """The layers :func:`weight_noise` perturbs, in module order: ``(name, module, weight)`` for every linear layer of
    the language model (a PEFT-wrapped one with its base weight). The position in this list is the layer index the
    noise is seeded with, the same with or without an adapter."""
    pattern = re.compile(LANGUAGE_MODEL_LORA_REGEX)
    layers = []
    for name, module in model.named_modules():
        if pattern.fullmatch(name) is None:
            continue
        weight = _linear_weight(module)
        if weight is not None:
            layers.append((name, module, weight))
    return layers


def _layer_seed(seed: int, index: int) -> int:
    """A 64-bit generator seed mixing the draw's ``seed`` and the layer ``index`` (well spread even for 0, 1, 2…)."""
    return int(np.random.SeedSequence([seed, index]).generate_state(1, dtype=np.uint64)[0])


def _draw(weight: torch.Tensor, std: float, seed: int) -> torch.Tensor:
    """``std · W.std() · ε`` with ``ε ~ N(0, 1)`` from a generator seeded with ``seed`` on the weight's device, in the
    weight's dtype (drawn in float32, then rounded)."""
    generator = torch.Generator(device=weight.device)
    generator.manual_seed(seed)
    with torch.no_grad():
        eps = torch.randn(weight.shape, generator=generator, device=weight.device, dtype=torch.float32)
        scale = std * weight.detach().float().std()
        return eps.mul_(scale).to(weight.dtype)


def _add_noise(noise: torch.Tensor):
    def hook(module: torch.nn.Module, args: tuple, output: torch.Tensor) -> torch.Tensor:
        x = args[0]
        return output + F.linear(x, noise.to(x.dtype))

    return hook


@contextmanager
def weight_noise(model: torch.nn.Module, *, std: float, seed: int) -> Iterator[int]:
    """Inside the context, every linear layer of ``model``'s language model computes with ``W + noise``, ``noise =
    std · W.std() · ε`` (``ε`` seeded from ``(seed, layer index)``); on exit the model is exactly as before.

    Yields the number of layers perturbed. Raises ``ValueError`` for ``std < 0``, ``seed < 0`` or a model without a
    language-model linear layer (see :func:`noise_layers`)."""
    if not std >= 0:
        raise ValueError(f"weight noise std must be >= 0, got {std}")
    if seed < 0:
        raise ValueError(f"weight noise seed must be >= 0, got {seed}")
    layers = noise_layers(model)
    if not layers:
        raise ValueError(
            f"No linear layer of a language model found in {type(model).__name__} "
            f"(names matching {LANGUAGE_MODEL_LORA_REGEX!r}): nothing to perturb"
        )
    handles = []
    try:
        for index, (_, module, weight) in enumerate(layers):
            noise = _draw(weight, std, _layer_seed(seed, index))
            handles.append(module.register_forward_hook(_add_noise(noise)))
        yield len(layers)
    finally:
        for handle in handles:
            handle.remove()
        handles.clear()  # the hooks held the noise tensors: they are freed with them
