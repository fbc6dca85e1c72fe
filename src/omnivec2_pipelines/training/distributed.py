"""Data-parallel training on PyTorch's own engine: torch.distributed + the elastic launcher.

A training stage that asks for more than one worker (``trainer.nproc_per_node`` > 1 or
``trainer.nnodes`` > 1) runs :func:`launch`: PyTorch's elastic agent (the engine behind
``torchrun``) starts ``nproc_per_node`` worker processes on this machine, they meet the workers
of the other machines at the rendezvous endpoint, join one process group (gloo on CPU, NCCL on
CUDA) and each runs the same :class:`~omnivec2_pipelines.training.trainer.Trainer` with the model
wrapped in ``DistributedDataParallel``. Every rank reads its own slice of every global batch;
only rank 0 logs and writes resume states; the caller gets rank 0's result.

Pure torch: nothing here imports Kedro.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import os
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Callable, Sequence

import torch
import torch.distributed as dist
from torch.distributed.elastic.multiprocessing.errors import record

log = logging.getLogger(__name__)

#: How long a rank waits in one collective (all-reduce, broadcast) before it fails instead of hanging.
COLLECTIVE_TIMEOUT_S = 1800


@dataclass(frozen=True)
class LaunchSpec:
    """Where and how many workers run one stage.

    Attributes:
        nproc_per_node: Worker processes on this machine (one per GPU on CUDA).
        nnodes: Machines taking part; all run the same command.
        rdzv_endpoint: ``host:port`` of the rendezvous (any one machine); ``""`` = this machine,
            free port (single node only).
        rdzv_backend: Rendezvous backend (``c10d``: no extra service needed).
        rdzv_id: Run id; machines with the same id and endpoint form one job.
        rdzv_timeout: Seconds to wait for all machines to join before failing.
        max_restarts: Times the elastic agent restarts a failed worker group (each restart resumes
            from the last resume state when ``trainer.checkpoint_every`` is on).
        device_type: ``"cpu"`` (gloo) or ``"cuda"`` (NCCL).
    """

    nproc_per_node: int
    nnodes: int = 1
    rdzv_endpoint: str = ""
    rdzv_backend: str = "c10d"
    rdzv_id: str = ""
    rdzv_timeout: int = 300
    max_restarts: int = 0
    device_type: str = "cpu"

    @property
    def world_size(self) -> int:
        return self.nproc_per_node * self.nnodes


def available_workers(device_type: str) -> int:
    """CPUs this process may use, or visible CUDA devices."""
    if device_type == "cuda":
        return torch.cuda.device_count()
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def check_spec(spec: LaunchSpec) -> None:
    """Refuse a launch that cannot work, before any process starts.

    Raises:
        ValueError: naming the ``trainer.*`` parameter and what was expected.
    """
    have = available_workers(spec.device_type)
    what = "CUDA devices" if spec.device_type == "cuda" else "CPU cores"
    if spec.nproc_per_node > have:
        raise ValueError(f"trainer.nproc_per_node={spec.nproc_per_node} but this machine has only {have} "
                         f"{what}; use at most {have}")
    if spec.nnodes > 1 and not spec.rdzv_endpoint:
        raise ValueError(f"trainer.nnodes={spec.nnodes} needs trainer.rdzv_endpoint=host:port of a machine "
                         f"every node can reach (the same on every node)")
    if spec.rdzv_endpoint and ":" not in spec.rdzv_endpoint:
        raise ValueError(f"trainer.rdzv_endpoint={spec.rdzv_endpoint!r}: expected host:port")


def rank_world() -> tuple[int, int]:
    """``(rank, world_size)`` of this process; ``(0, 1)`` outside a process group."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0"))


def mean_across_ranks(values: Sequence[float]) -> list[float]:
    """Average a few floats over all ranks (identity in a single process)."""
    _, world = rank_world()
    if world == 1 or not values:
        return list(values)
    t = torch.tensor(list(values), dtype=torch.float64, device=_collective_device())
    dist.all_reduce(t)
    return (t / world).tolist()


def all_ranks_true(flag: bool) -> bool:
    """True only when ``flag`` is true on every rank (identity in a single process)."""
    _, world = rank_world()
    if world == 1:
        return flag
    t = torch.tensor([1 if flag else 0], dtype=torch.int32, device=_collective_device())
    dist.all_reduce(t, op=dist.ReduceOp.MIN)
    return bool(t.item())


def to_cpu(obj: Any) -> Any:
    """``obj`` with every tensor in it on the CPU, through dicts, lists, tuples and dataclasses.

    CPU tensors are kept as they are (no copy); containers are rebuilt, so the input is left alone.
    """
    if isinstance(obj, torch.Tensor):
        return obj.cpu()
    if isinstance(obj, dict):
        out = copy.copy(obj)  # keeps the mapping's type (OrderedDict, defaultdict, ...)
        out.update((k, to_cpu(v)) for k, v in obj.items())
        return out
    if isinstance(obj, list):
        return [to_cpu(v) for v in obj]
    if isinstance(obj, tuple):
        items = [to_cpu(v) for v in obj]
        return type(obj)(*items) if hasattr(obj, "_fields") else type(obj)(items)  # a namedtuple, or not
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return dataclasses.replace(obj, **{f.name: to_cpu(getattr(obj, f.name))
                                           for f in dataclasses.fields(obj) if f.init})
    return obj


def broadcast_from_rank0(obj: Any) -> Any:
    """Rank 0's ``obj`` on every rank (identity in a single process).

    Its tensors travel on the CPU and arrive there (see :func:`to_cpu`): pickled CUDA tensors would be
    unpickled onto rank 0's GPU on every rank; the receivers move them where they need them.
    """
    _, world = rank_world()
    if world == 1:
        return obj
    box = [to_cpu(obj)]
    dist.broadcast_object_list(box, src=0, device=_collective_device())
    return box[0]


def _collective_device() -> torch.device:
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


@record  # a worker's exception reaches the launcher (and the error message) through an error file
def _worker(fn: Callable[..., Any], args: tuple[Any, ...], device_type: str, nproc: int,
            log_level: int) -> Any:
    """Body of every worker process: join the process group, run ``fn``, leave the group.

    Returns ``fn``'s result on the first rank of each machine (the caller keeps global rank 0's).
    """
    rank = int(os.environ["RANK"])
    logging.basicConfig(level=log_level if rank == 0 else logging.WARNING,
                        format=f"%(asctime)s [rank {rank}] %(levelname)s %(name)s: %(message)s")
    if device_type == "cuda":
        torch.cuda.set_device(local_rank())
    else:  # share the cores: N workers x all threads each would oversubscribe the CPU
        torch.set_num_threads(max(1, available_workers("cpu") // nproc))
    backend = "nccl" if device_type == "cuda" else "gloo"
    dist.init_process_group(backend, timeout=timedelta(seconds=COLLECTIVE_TIMEOUT_S))
    try:
        result = fn(*args)
    finally:
        dist.destroy_process_group()
    return result if local_rank() == 0 else None


def launch(fn: Callable[..., Any], args: tuple[Any, ...], spec: LaunchSpec, what: str) -> Any:
    """Run ``fn(*args)`` on every worker of a data-parallel job; return global rank 0's result.

    ``fn`` and ``args`` are pickled into freshly spawned processes, so ``fn`` must be a module-level
    function. Tensors in ``args`` arrive in shared memory (torch.multiprocessing): ``fn`` must copy
    any tensor it modifies (e.g. ``copy.deepcopy(model)``) or the ranks write into one another. On machines other than rank 0's, the first local rank's result is returned (with
    DistributedDataParallel every replica ends with the same weights).

    Args:
        fn: The work of one rank (it sees an initialised default process group).
        args: Its arguments.
        spec: Workers and rendezvous.
        what: Name for messages (e.g. the stage).

    Raises:
        ValueError: a spec that cannot work on this machine (see :func:`check_spec`).
        RuntimeError: a worker crashed (naming its rank and error) or the rendezvous failed or timed
            out (naming the endpoint); the other workers are stopped, none is left hanging.
    """
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.elastic.rendezvous.api import RendezvousError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    check_spec(spec)
    endpoint = spec.rdzv_endpoint or "localhost:0"
    config = LaunchConfig(
        min_nodes=spec.nnodes, max_nodes=spec.nnodes, nproc_per_node=spec.nproc_per_node,
        run_id=spec.rdzv_id or f"omnivec2-{uuid.uuid4().hex[:8]}", rdzv_backend=spec.rdzv_backend,
        rdzv_endpoint=endpoint, max_restarts=spec.max_restarts, monitor_interval=0.5, start_method="spawn",
        rdzv_configs={"timeout": spec.rdzv_timeout, "join_timeout": spec.rdzv_timeout,
                      "read_timeout": spec.rdzv_timeout},
    )
    log.info("%s: %d worker(s) (%d per node x %d node(s), %s), rendezvous %s", what, spec.world_size,
             spec.nproc_per_node, spec.nnodes, "NCCL" if spec.device_type == "cuda" else "gloo", endpoint)
    try:
        results = elastic_launch(config, _worker)(fn, args, spec.device_type, spec.nproc_per_node,
                                                          logging.getLogger().getEffectiveLevel())
    except ChildFailedError as e:
        rank, failure = min(e.failures.items())
        raise RuntimeError(f"{what}: worker rank {rank} (local rank {failure.local_rank}, pid {failure.pid}) "
                           f"failed with exit code {failure.exitcode}: {_failure_message(failure)}") from None
    except RendezvousError as e:
        raise RuntimeError(f"{what}: the {spec.nnodes} node(s) did not meet at rendezvous endpoint {endpoint} "
                           f"within trainer.rdzv_timeout={spec.rdzv_timeout}s ({type(e).__name__}: {e}); check "
                           f"that the endpoint is reachable from every node and that every node runs the "
                           f"same command") from None
    ranks = [r for r, v in sorted(results.items()) if v is not None]
    if not ranks:
        raise RuntimeError(f"{what}: no worker returned a result")
    return results[ranks[0]]


def _failure_message(failure: Any) -> str:
    """The worker's exception (its last line) when the elastic error file recorded one."""
    msg = failure.message
    if isinstance(msg, dict):
        msg = msg.get("message", msg)
    text = str(msg or "").strip()
    if not text or text.startswith("To enable traceback"):
        return f"the process died (signal or exit code {failure.exitcode}) without a Python exception"
    lines = [ln for ln in text.splitlines() if ln.strip()]
    return lines[-1] if lines else text
