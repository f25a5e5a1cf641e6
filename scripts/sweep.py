"""Sweep agents x seeds x env/agent configs with Ray Tune; one training run per trial.

    python scripts/sweep.py --agents avg_kd reinforce ppo --seeds 0 1 2 --total-steps 2000 \
        --env-kwargs '{"task": "synthetic"}' --env-grid '{"reward": ["student_ce", "ce_gain"]}' \
        --results results/sweep.jsonl

Runs on a local Ray instance by default; ``--address`` (or ``RAY_ADDRESS``) joins a cluster. Records
go to ``--results`` in the comparison's format as each trial ends; running the same command again
skips the trials already done and retries the failed ones.
"""

from __future__ import annotations

import argparse
import json
import logging

from experiments.sweep import DEFAULT_ENV_ID, SweepSpec, run_sweep


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--agents", nargs="+", required=True, help="names from agents.agent_names()")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--total-steps", type=int, required=True, help="env steps of each training run")
    parser.add_argument("--env-id", default=DEFAULT_ENV_ID)
    parser.add_argument("--env-kwargs", type=json.loads, default={}, help="JSON object of fixed env arguments")
    parser.add_argument("--env-grid", type=json.loads, default={}, help="JSON object: env argument -> list of values")
    parser.add_argument("--agent-kwargs", type=json.loads, default={}, help="JSON object of fixed agent config")
    parser.add_argument("--agent-grid", type=json.loads, default={}, help="JSON object: agent config field -> list of values")
    parser.add_argument("--results", default="results/sweep.jsonl", help="JSON-lines results file (appended)")
    parser.add_argument("--logdir", default="runs", help="TensorBoard run directories of the trials")
    parser.add_argument("--address", default=None, help="Ray cluster address (default: RAY_ADDRESS, else a local instance)")
    parser.add_argument("--num-cpus", type=int, default=None, help="CPUs of a local Ray instance (default: all)")
    parser.add_argument("--cpus-per-trial", type=float, default=1.0)
    parser.add_argument("--name", default="kd_env_sweep", help="Tune experiment name")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    spec = SweepSpec(
        agents=tuple(args.agents), seeds=tuple(args.seeds), total_steps=args.total_steps, env_id=args.env_id,
        env_kwargs=args.env_kwargs, env_grid=args.env_grid, agent_kwargs=args.agent_kwargs, agent_grid=args.agent_grid,
    )
    records = run_sweep(spec, args.results, args.logdir, args.address, args.num_cpus, args.cpus_per_trial, args.name)
    failed = [r for r in records if r.status != "ok"]
    logging.info("%d trials run (%d failed); results in %s", len(records), len(failed), args.results)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
