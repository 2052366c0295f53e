"""One rank of ZeroRedundancyOptimizer(optimizer_class=lrfast.torch.AdamW) under
DistributedDataParallel on a gloo group: ``torchrun --nproc_per_node 2 zero_worker.py OUT``.
Each rank trains on its half of every batch; rank 0 saves the parameters and the consolidated
optimizer state to OUT (torch.save)."""

import sys

import torch
import torch.distributed as dist
from common import STEPS, batches, model  # type: ignore[import-not-found]
from torch.distributed.optim import ZeroRedundancyOptimizer
from torch.nn.parallel import DistributedDataParallel

import lrfast.torch as lt


def main(out: str) -> None:
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    net = DistributedDataParallel(model())
    optimizer = ZeroRedundancyOptimizer(
        net.parameters(), optimizer_class=lt.AdamW, lr=1e-2, weight_decay=0.1
    )
    for x, y in batches(STEPS):
        part = slice(rank * len(x) // world, (rank + 1) * len(x) // world)
        optimizer.zero_grad()
        torch.nn.functional.mse_loss(net(x[part]), y[part]).backward()
        optimizer.step()
    optimizer.consolidate_state_dict(to=0)
    if rank == 0:
        torch.save(
            {
                "params": [p.detach() for p in net.module.parameters()],
                "optimizer": optimizer.state_dict(),
            },
            out,
        )
    dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1])
