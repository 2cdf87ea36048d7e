"""Peak RSS of LightGCN training steps (no evaluation) on a mirrored graph: `python benchmarks/memory_per_node.py gowalla`."""
import json
import os
import resource
import sys
_mirror = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data")
if not os.environ.get("CPTPP_DATA_MIRROR") and os.path.isdir(_mirror):
    os.environ["CPTPP_DATA_MIRROR"] = os.path.abspath(_mirror)
import torch
from cptpp.recsys.datasets import load_dataset
from cptpp.recsys.task import RecTask, RecConfig
from cptpp.train.loop import make_optimizer
name = sys.argv[1]
data = load_dataset(name, progress=False)
import gc

gc.collect()
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
task = RecTask(data, RecConfig(model="lightgcn", layers=3, dim=64))
opt = make_optimizer("adam", task.model.parameters(), 1e-3, 0)
it = iter(task.batches(1, torch.Generator().manual_seed(0)))
for _ in range(3):
    l = task.loss(next(it)); opt.zero_grad(); l.backward(); opt.step()
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
n = data.num_users + data.num_items
print(json.dumps({"dataset": name, "nodes": n, "train_pairs": len(data.train), "rss_before_model_MB": base/1024, "rss_peak_MB": peak/1024, "delta_MB": (peak-base)/1024, "bytes_per_node": (peak-base)*1024/n}))
