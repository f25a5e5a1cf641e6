"""Train one agent on a kd_env environment: `kd-env train` under its old name (`kd-env train --help`).

    python scripts/train.py --agent reinforce --total-steps 2000 --seed 0 --logdir runs \
        --env-kwargs task=synthetic reward=ce_gain temperature=1.0 --agent-kwargs advantage=instance
    python scripts/train.py --resume runs/TeacherSelection-v1__reinforce__0__1700000000

As this script always allowed, ``--env-kwargs`` and ``--agent-kwargs`` take several KEY=VALUE pairs
after one flag. Checkpoints go into the run directory every ``--checkpoint-every`` env steps, at the
end, and on Ctrl-C or SIGTERM; ``--resume RUN_DIR`` continues the newest.
"""

from __future__ import annotations

import sys

from kd_cli.app import main as cli

MULTI_VALUE_FLAGS = ("--env-kwargs", "--agent-kwargs")


def repeat_flags(argv: list[str]) -> list[str]:
    """``--env-kwargs a=1 b=2`` -> ``--env-kwargs a=1 --env-kwargs b=2`` (the CLI's repeatable form)."""
    expanded, flag = [], None
    for arg in argv:
        if arg.startswith("--"):
            flag = arg if arg in MULTI_VALUE_FLAGS else None
        elif flag is not None and expanded[-1] != flag:
            expanded.append(flag)
        expanded.append(arg)
    return expanded


def main(argv: list[str] | None = None) -> int:
    try:
        cli(["train", *repeat_flags(sys.argv[1:] if argv is None else argv)], prog_name="scripts/train.py")
    except SystemExit as exit:
        return exit.code if isinstance(exit.code, int) else int(exit.code is not None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
