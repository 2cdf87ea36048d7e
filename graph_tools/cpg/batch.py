"""`ProgramGraph`s as torch_geometric ``Data`` / ``Batch``."""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from .graph import ProgramGraph


def _pyg_data():
    try:
        from torch_geometric.data import Batch, Data
    except ImportError as e:  # pragma: no cover - depends on the install
        raise ImportError("to_pyg needs torch-geometric; install the [code] extra: "
                          "pip install 'cptpp[code]' (from a checkout: pip install -e '.[code]')") from e
    return Batch, Data


def to_pyg_data(g: ProgramGraph):
    """One graph as a ``torch_geometric.data.Data`` (fields as in :func:`to_pyg`)."""
    _, Data = _pyg_data()
    return Data(
        edge_index=torch.from_numpy(np.ascontiguousarray(g.edge_index, dtype=np.int64)).reshape(2, -1),
        edge_type=torch.from_numpy(np.ascontiguousarray(g.edge_type, dtype=np.int64)),
        node_kind=torch.from_numpy(g.node_kind.astype(np.int64)),
        byte_span=torch.from_numpy(np.ascontiguousarray(g.byte_span, dtype=np.int64)),
        node_label=[str(x) for x in g.node_label],
        language=g.language,
        num_nodes=g.num_nodes,
    )


def to_pyg(graphs: Sequence[ProgramGraph]):
    """A ``torch_geometric.data.Batch`` of ``graphs``.

    Each graph becomes a ``Data`` with ``edge_index`` ``[2, E]`` long, ``edge_type`` ``[E]``
    long (`EdgeType` values), ``node_kind`` ``[N]`` long (tree-sitter kind ids; a Python kind
    id and a Java kind id are different vocabularies), ``byte_span`` ``[N, 2]`` long,
    ``num_nodes``, and the Python lists ``node_label`` (str per node) and ``language``.
    Node ids are offset per graph by ``Batch`` as usual; ``batch.batch`` maps node -> graph.
    """
    Batch, _ = _pyg_data()
    if len(graphs) == 0:
        raise ValueError("to_pyg needs at least one graph")
    return Batch.from_data_list([to_pyg_data(g) for g in graphs])
