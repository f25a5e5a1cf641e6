"""Run a comparison grid and write its tables and plots: `kd-env compare` under its old name, so the
README's main command works as written (`kd-env compare --help` lists every flag).

    python scripts/compare.py --preset demo           # the README's main job: kd-env compare --preset demo
    python scripts/compare.py --preset full --workers 2
    python scripts/compare.py --task csv:reviews.csv --agents avg_kd,reinforce --seeds 0-2
"""

import sys

from kd_cli.app import main

if __name__ == "__main__":
    main(["compare", *sys.argv[1:]], prog_name="scripts/compare.py")
