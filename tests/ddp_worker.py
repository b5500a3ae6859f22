"""One rank of the 2-process DDP recovery test (launched by torchrun from test_recover.py).

Each rank trains the same student through `recover` (HF Trainer, gloo backend on CPU) and
writes what the test compares: a hash of its final (merged) weights, the subset hash, and
the subset positions its batches held.
"""

import hashlib
import json
import os
import sys

import torch

from studylib.testbed import instructions


def main(student: str, teacher: str, out: str, cache: str, result_dir: str) -> None:
    torch.set_num_threads(1)
    from studylib.compress import recover

    records = instructions.instruction_set(64, turns=1, seed=0)
    report = recover.recover(student, teacher, "sft+l2", records=records, data_fraction=0.5,
                             seed=0, out=out, cache_dir=cache, max_steps=3, progress=False,
                             training_overrides={"per_device_train_batch_size": 4})
    digest = hashlib.sha256()
    for name, tensor in sorted(report.model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().float().numpy().tobytes())
    rank = int(os.environ["RANK"])
    result = {"rank": rank, "world_size": report["world_size"], "weights": digest.hexdigest(),
              "subset_hash": report["subset_hash"], "seen": report.seen_positions,
              "steps": report["steps"], "cache": report["teacher_cache"]}
    with open(os.path.join(result_dir, f"rank{rank}.json"), "w") as f:
        json.dump(result, f)


if __name__ == "__main__":
    main(*sys.argv[1:6])
