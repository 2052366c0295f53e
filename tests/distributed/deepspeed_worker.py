"""One rank of DeepSpeed ZeRO-Offload (stage 2, optimizer on the CPU, bf16) with a client
optimizer: ``torchrun --nproc_per_node 2 deepspeed_worker.py lrfast|torch OUT``. Rank 0 saves
the float32 master parameters after the steps to OUT."""

import sys

import deepspeed
import torch
from common import STEPS, batches, model  # type: ignore[import-not-found]

import lrfast.torch as lt

CONFIG = {
    "train_micro_batch_size_per_gpu": 8,
    "gradient_accumulation_steps": 1,
    "bf16": {"enabled": True},
    "zero_optimization": {"stage": 2, "offload_optimizer": {"device": "cpu"}},
    "zero_force_ds_cpu_optimizer": False,
    "zero_allow_untested_optimizer": True,
}


def main(which: str, out: str) -> None:
    deepspeed.init_distributed(dist_backend="gloo")
    rank, world = torch.distributed.get_rank(), torch.distributed.get_world_size()
    net = model().float()
    optimizer_class = lt.AdamW if which == "lrfast" else torch.optim.AdamW
    optimizer = optimizer_class(net.parameters(), lr=1e-2, weight_decay=0.1)
    engine, _, _, _ = deepspeed.initialize(model=net, optimizer=optimizer, config=CONFIG)
    for x, y in batches(STEPS):
        part = slice(rank * len(x) // world, (rank + 1) * len(x) // world)
        xb = x[part].to(torch.bfloat16)
        loss = torch.nn.functional.mse_loss(engine(xb).float(), y[part].float())
        engine.backward(loss)
        engine.step()
    # The float32 master weights, gathered from the ZeRO partitions.
    masters = [t.detach().clone() for t in engine.optimizer.single_partition_of_fp32_groups]
    gathered = [None] * world
    torch.distributed.all_gather_object(gathered, masters)
    if rank == 0:
        inner = type(engine.optimizer.optimizer)
        torch.save({"masters": gathered, "optimizer": f"{inner.__module__}.{inner.__name__}"}, out)
    # Both ranks leave together and tear the group down: a rank that exits while the other
    # still talks to it over gloo aborts (std::terminate) about one run in ten.
    torch.distributed.barrier()
    torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
