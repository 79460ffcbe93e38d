import os

import torch
import torch.multiprocessing as mp
from train_toy import ToyData, ToyTask, toy_config

from audiomae.train import distributed as dist_utils
from audiomae.train import fit


def _worker(rank: int, world: int, out: str) -> None:
    torch.set_num_threads(1)
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank))
    # The ranks meet in a file, not on a port: no free port to pick, so none to lose to another process.
    info = dist_utils.init_distributed("gloo", init_method=f"file://{os.path.join(out, 'rendezvous')}")
    assert info.world_size == world and info.rank == rank and dist_utils.is_main() == (rank == 0)
    # Different seeds per rank: the loop must broadcast rank 0's initial weights.
    task = ToyTask(seed=rank)
    fit(task, ToyData(), None, toy_config(steps=4, ckpt_every=2), os.path.join(out, "run"))
    torch.save(task.model.state_dict(), os.path.join(out, f"rank{rank}.pt"))
    dist_utils.cleanup()


def test_two_gloo_processes_end_with_identical_weights(tmp_path):
    mp.spawn(_worker, args=(2, str(tmp_path)), nprocs=2, join=True)
    w0 = torch.load(tmp_path / "rank0.pt", weights_only=True)
    w1 = torch.load(tmp_path / "rank1.pt", weights_only=True)
    for k in w0:
        torch.testing.assert_close(w0[k], w1[k], rtol=0, atol=0)
    init = ToyTask(seed=0).model.state_dict()
    assert any(not torch.equal(init[k], w0[k]) for k in w0), "weights did not change"
    # Only rank 0 writes checkpoints and logs.
    assert (tmp_path / "run" / "checkpoints" / "latest.json").exists()
    assert len(list((tmp_path / "run" / "checkpoints").glob("step_*"))) == 2
