"""One distillation epoch of the student with cached teacher outputs vs the same epoch running the
teachers online (same run, same student, same batches, Avg-KD weights), in alternating rounds.

The online side gets every advantage but the forward pass itself: texts are tokenised before the
clock starts and teachers run in eval mode under ``torch.no_grad``. Teacher preparation (fine-tuning,
filling the cache) happens before timing, or is read from a warm cache.

    python scripts/bench_teacher_cache.py                        # default task, teachers, head student
    python scripts/bench_teacher_cache.py --student transformer  # a 3-layer MiniLM student
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from kd_env.config import EnvConfig
from kd_env.distill import KDConfig, kd_loss
from kd_env.tasks.dispatch import build_distillation_data
from kd_env.students import build_student, default_learning_rate
from kd_env.teachers import load_teacher_model
from kd_env.text_models import encode, load_tokenizer
from kd_env.tasks.text_data import prepare_text_task


def run_epoch(student, optimizer, inputs, labels, batches, teacher_logits) -> float:
    """Seconds for one pass of KD steps; ``teacher_logits(batch)`` gives the (B, K, C) teacher logits."""
    config = KDConfig()
    start = time.perf_counter()
    for batch in batches:
        targets = teacher_logits(batch)
        weights = torch.full(targets.shape[:2], 1.0 / targets.shape[1])
        logits = student({name: tensor[batch] for name, tensor in inputs.items()})
        loss = kd_loss(logits, labels[batch], targets, weights, config).total.mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", default=EnvConfig.task)
    parser.add_argument("--student", default=EnvConfig.student, choices=["head", "transformer"])
    parser.add_argument("--batch-size", type=int, default=EnvConfig.batch_size)
    parser.add_argument("--rounds", type=int, default=2, help="alternating (cached, online) epoch pairs; medians reported")
    args = parser.parse_args()

    text_task, cache, _, _ = prepare_text_task(args.task)
    data = build_distillation_data(args.task, None, None, args.student)
    train = data.splits["train"]
    student = build_student(args.student, data, seed=0)
    optimizer = torch.optim.AdamW(student.parameters(), lr=default_learning_rate(args.student))
    order = np.random.default_rng(0).permutation(len(train))
    batches = [torch.from_numpy(order[i : i + args.batch_size]) for i in range(0, len(order) - args.batch_size + 1, args.batch_size)]

    teachers = []
    for name in cache.teacher_names:
        entry = cache.entry(name)
        spec = entry.meta["spec"]
        encoded = encode(load_tokenizer(spec["encoder"]), text_task.splits["train"], spec["max_length"])
        teachers.append((load_teacher_model(entry), encoded))

    @torch.no_grad()
    def online_logits(batch):
        return torch.stack([model(encoded.batch(batch.tolist(), torch.device("cpu")))[0] for model, encoded in teachers], dim=1)

    cached, online = [], []
    for _ in range(args.rounds):  # alternating, so machine noise hits both sides alike
        cached.append(run_epoch(student, optimizer, train.student_inputs, train.labels, batches, lambda b: train.teacher_logits[b]))
        online.append(run_epoch(student, optimizer, train.student_inputs, train.labels, batches, online_logits))
    cached_s, online_s = statistics.median(cached), statistics.median(online)
    print(f"task {args.task}, student {args.student}, teachers {list(cache.teacher_names)}, "
          f"{len(batches)} batches of {args.batch_size}, torch threads {torch.get_num_threads()}")
    print(f"cached teacher outputs: {cached_s:8.3f} s/epoch (median of {args.rounds}: {[round(t, 3) for t in cached]})")
    print(f"teachers run online:    {online_s:8.3f} s/epoch (median of {args.rounds}: {[round(t, 3) for t in online]})")
    print(f"speed-up: {online_s / cached_s:.1f}x")


if __name__ == "__main__":
    main()
