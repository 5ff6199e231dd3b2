"""Multi-GPU and multi-node training with PyTorch DistributedDataParallel under ``torchrun``.

``torchrun --nproc_per_node 4 -m cxrzoo train rare_disease --data ...`` starts one process per
GPU; each trains on its shard of every epoch and DDP averages the gradients, so all ranks
hold identical weights. Rank 0 alone writes checkpoints, logs and the trained model.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class DistContext:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_env(cls, device: str | None = None) -> tuple[DistContext, torch.device]:
        """Join the process group ``torchrun`` describes in the environment, if any.

        Returns the context and this process's device (``cuda:LOCAL_RANK`` on GPUs).
        """
        world = int(os.environ.get("WORLD_SIZE", "1"))
        want_cuda = (device or ("cuda" if torch.cuda.is_available() else "cpu")).startswith("cuda")
        if world <= 1:
            return cls(), torch.device(device or ("cuda" if want_cuda else "cpu"))
        import torch.distributed as dist

        rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
        if want_cuda:
            torch.cuda.set_device(local_rank)
            dev = torch.device("cuda", local_rank)
        else:
            dev = torch.device("cpu")
        if not dist.is_initialized():
            dist.init_process_group(backend="nccl" if want_cuda else "gloo")
        return cls(rank=rank, world=world, local_rank=local_rank), dev

    def wrap(self, model: nn.Module) -> nn.Module:
        from torch.nn.parallel import DistributedDataParallel as DDP

        device_ids = [self.local_rank] if next(model.parameters()).is_cuda else None
        return DDP(model, device_ids=device_ids)

    def no_sync(self, net: nn.Module) -> contextlib.AbstractContextManager:
        """Skip the gradient all-reduce on accumulation steps that don't update weights."""
        return net.no_sync() if hasattr(net, "no_sync") else contextlib.nullcontext()

    def check_in_sync(self, model: nn.Module) -> None:
        """Raise if any rank's parameters differ from rank 0's (a DDP bug, never expected)."""
        import torch.distributed as dist

        with torch.no_grad():
            digest = torch.stack([p.detach().double().sum() for p in model.parameters()])
            if digest.device.type != "cpu" and dist.get_backend() == "gloo":
                digest = digest.cpu()
        gathered = [torch.empty_like(digest) for _ in range(self.world)]
        dist.all_gather(gathered, digest)
        for rank, other in enumerate(gathered[1:], start=1):
            if not torch.equal(gathered[0], other):
                raise RuntimeError(f"DDP ranks out of sync: rank {rank}'s parameters differ from rank 0's")

    def barrier(self) -> None:
        if self.world > 1:
            import torch.distributed as dist

            dist.barrier()

    def close(self) -> None:
        if self.world > 1:
            import torch.distributed as dist

            if dist.is_initialized():
                dist.destroy_process_group()
