"""The one recommendation encoder: LightGCN (MF is the same encoder with zero layers).

He et al., SIGIR 2020: ``E^(l+1) = Â E^(l)`` with ``Â = D^{-1/2} A D^{-1/2}`` over the user-item
graph, final embedding = mean of layers (eq. 4 with alpha_l = 1/(L+1)). SimGCL/XSimGCL skip
layer 0 in the readout (their papers, Sec. 4); that is ``readout_from=1``.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from graph_tools.sparse import SparseGraph, propagate


class LightGCN(nn.Module):
    """User and item embedding tables propagated over a normalized bipartite graph.

    Args:
        num_users, num_items: table sizes; node ``U + i`` is item ``i``.
        dim: embedding width (64 in the papers).
        layers: propagation depth ``L``; 0 gives matrix factorization.
        readout_from: first layer included in the mean readout (0 = LightGCN, 1 = SimGCL/XSimGCL).
    """

    def __init__(self, num_users: int, num_items: int, dim: int = 64, layers: int = 3,
                 readout_from: int = 0):
        super().__init__()
        if layers < 0 or not 0 <= readout_from <= max(layers, 0):
            raise ValueError(f"need layers >= 0 and 0 <= readout_from <= layers, got {layers}, {readout_from}")
        self.num_users, self.num_items, self.layers, self.readout_from = num_users, num_items, layers, readout_from
        self.user = nn.Parameter(torch.empty(num_users, dim))
        self.item = nn.Parameter(torch.empty(num_items, dim))
        # Xavier-uniform as in the LightGCN/SELFRec reference code.
        nn.init.xavier_uniform_(self.user)
        nn.init.xavier_uniform_(self.item)

    @property
    def dim(self) -> int:
        return self.user.shape[1]

    def layer_outputs(self, graph: SparseGraph | list[SparseGraph] | None,
                      after_layer: Callable[[torch.Tensor, int], torch.Tensor] | None = None
                      ) -> list[torch.Tensor]:
        """``[E^(0), ..., E^(L)]``, each ``[U + I, dim]``."""
        ego = torch.cat([self.user, self.item], 0)
        if self.layers == 0:
            return [ego]
        return propagate(graph, ego, self.layers, after_layer)

    def readout(self, layers: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean over layers ``readout_from..L`` -> (users ``[U, dim]``, items ``[I, dim]``)."""
        final = torch.stack(layers[self.readout_from:], 0).mean(0)
        return final[: self.num_users], final[self.num_users:]

    def forward(self, graph, after_layer=None) -> tuple[torch.Tensor, torch.Tensor]:
        return self.readout(self.layer_outputs(graph, after_layer))
