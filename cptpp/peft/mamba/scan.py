"""The selective scan of Mamba (Gu & Dao 2023, Alg. 2), written once for the PEFT mixer.

Discretization (zero-order hold on A, Euler on B), per channel d and state n:
    h_t = exp(dt_t * A) * h_{t-1} + dt_t * B_t * x_t          h: [batch, d, n]
    y_t = <h_t, C_t> + D * x_t
The recurrence is sequential in t, exactly as transformers' reference (slow) path, so the PEFT
forward equals the original model's forward when no method is active (tests pin this).
"""
from __future__ import annotations

import torch


def selective_scan(
    x: torch.Tensor,
    dt: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor,
    h0: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Run the scan over a whole sequence.

    Args:
        x:  [batch, L, d] input after conv + SiLU.
        dt: [batch, L, d] step sizes, already softplus'ed (positive).
        A:  [d, n] negative real state matrix (diagonal per channel).
        B, C: [batch, L, n] input-dependent projections.
        D:  [d] skip connection.
        h0: [batch, d, n] initial state (a cached state when decoding), zeros when None.
    Returns:
        y [batch, L, d] (before the z gate) and the final state [batch, d, n].
    """
    in_dtype = x.dtype
    x, dt, B, C = x.float(), dt.float(), B.float(), C.float()
    batch, L, d = x.shape
    n = A.shape[-1]
    # Discretize all steps at once; only the recurrence itself is a loop.
    dA = torch.exp(dt.unsqueeze(-1) * A.float())  # [batch, L, d, n]
    dBx = (dt * x).unsqueeze(-1) * B.unsqueeze(2)  # [batch, L, d, n]
    h = torch.zeros(batch, d, n, dtype=torch.float32, device=x.device) if h0 is None else h0.float()
    ys = []
    # unbind, not dA[:, t]: the backward of one unbind is one stack, while L index ops would each
    # allocate and fill a full-size zero gradient (quadratic in L).
    for a_t, b_t, c_t in zip(dA.unbind(1), dBx.unbind(1), C.unbind(1)):
        h = a_t * h + b_t
        ys.append(torch.einsum("bdn,bn->bd", h, c_t))
    y = torch.stack(ys, dim=1) + x * D.float()
    return y.to(in_dtype), h
