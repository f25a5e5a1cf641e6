"""Train one agent on a kd_env environment; prints the final student's dev/test accuracy.

    python scripts/train.py --agent reinforce --total-steps 2000 --seed 0 --logdir runs \
        --env-kwargs task=synthetic reward=ce_gain temperature=1.0 --agent-kwargs advantage=instance
    python scripts/train.py --resume runs/TeacherSelection-v0__reinforce__0__1700000000

Checkpoints go into the run directory every ``--checkpoint-every`` env steps, at the end, and on
Ctrl-C or SIGTERM; ``--resume RUN_DIR`` continues the newest. Values of ``key=value`` pairs are read
as JSON when they parse (numbers, lists, dicts), else as strings.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys

from agents import agent_names
from agents.checkpoints import CheckpointError
from agents.training import DEFAULT_CHECKPOINT_EVERY, Terminated, TrainConfig, resume, train


def parse_pairs(pairs: list[str]) -> dict:
    parsed = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise SystemExit(f"expected key=value, got {pair!r}")
        try:
            parsed[key] = json.loads(value)
        except json.JSONDecodeError:
            parsed[key] = value
    return parsed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--agent", choices=agent_names())
    parser.add_argument("--total-steps", type=int, help="env steps for the whole run (with --resume: a new total)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--logdir", default="runs")
    parser.add_argument("--env-id", default="kd_env/TeacherSelection-v0")
    parser.add_argument("--env-kwargs", nargs="*", default=[], metavar="KEY=VALUE")
    parser.add_argument("--agent-kwargs", nargs="*", default=[], metavar="KEY=VALUE")
    parser.add_argument("--resume", metavar="RUN_DIR", help="continue the checkpoint in this run directory")
    parser.add_argument("--checkpoint-every", type=int, default=DEFAULT_CHECKPOINT_EVERY, metavar="N",
                        help="env steps between periodic checkpoints (0: only at the end and on Ctrl-C/SIGTERM)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    checkpoint_every = args.checkpoint_every or None

    try:
        if args.resume:
            result = resume(args.resume, total_steps=args.total_steps, checkpoint_every=checkpoint_every)
        else:
            if args.agent is None or args.total_steps is None:
                parser.error("--agent and --total-steps are required unless --resume is given")
            config = TrainConfig(
                agent=args.agent,
                total_steps=args.total_steps,
                seed=args.seed,
                env_id=args.env_id,
                env_kwargs=parse_pairs(args.env_kwargs),
                agent_kwargs=parse_pairs(args.agent_kwargs),
                logdir=args.logdir,
            )
            result = train(config, checkpoint_every=checkpoint_every)
    except CheckpointError as error:
        print(f"cannot resume: {error}", file=sys.stderr)
        return 2
    except Terminated:
        print("terminated: checkpoint saved; continue with --resume RUN_DIR", file=sys.stderr)
        return 128 + signal.SIGTERM
    except KeyboardInterrupt:
        print("interrupted: checkpoint saved; continue with --resume RUN_DIR", file=sys.stderr)
        return 130
    print(f"run: {result.run_dir}")
    print(f"env steps: {result.env_steps}  wall time: {result.wall_time_s:.1f}s")
    print(f"student dev accuracy: {result.dev_accuracy:.4f}  test accuracy: {result.test_accuracy:.4f}  test macro-F1: {result.test_macro_f1:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
