"""Fine-tune a task's teachers and fill the cache (what the env's first construction does), then
print each teacher's accuracy per split.

    python scripts/prepare_teachers.py                                   # the default task and teachers
    python scripts/prepare_teachers.py --task bbc-news --teacher minilm-l3 --teacher mpnet-l3
    python scripts/prepare_teachers.py --task csv:reviews.csv --option text_column=review --device cuda
"""

from __future__ import annotations

import argparse
import json
import logging

from kd_env.teachers import DEFAULT_TEACHERS
from kd_env.text_problem import prepare_text_task


def parse_option(text: str) -> tuple[str, object]:
    key, _, value = text.partition("=")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", default="twitter-sentiment", help="task name (twitter-sentiment, bbc-news, glue:NAME, csv:PATH, json:PATH)")
    parser.add_argument("--teacher", action="append", help=f"a named teacher {sorted(DEFAULT_TEACHERS)} or a JSON spec; repeat for several (default: all named)")
    parser.add_argument("--option", action="append", default=[], type=parse_option, metavar="KEY=VALUE", help="a task option (value parsed as JSON when it can be), e.g. max_train=4000")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, ...")
    parser.add_argument("--mixed-precision", action="store_true", help="bfloat16 autocast (GPU)")
    parser.add_argument("--cache-dir", help="cache root (default: KD_ENV_CACHE or the user cache)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    teachers = None if args.teacher is None else [json.loads(t) if t.startswith("{") else t for t in args.teacher]
    options = {**dict(args.option), "device": args.device, "mixed_precision": args.mixed_precision}
    if args.cache_dir:
        options["cache_dir"] = args.cache_dir
    _, cache, _, _ = prepare_text_task(args.task, teachers, options)
    print(f"| teacher | train | dev | test | prepared in |\n|---|---|---|---|---|")
    for name in cache.teacher_names:
        meta = cache.entry(name).meta
        accuracy = meta["accuracy"]
        print(f"| {name} | {accuracy['train']:.3f} | {accuracy['dev']:.3f} | {accuracy['test']:.3f} | {meta['prepare_seconds']:.0f} s |")


if __name__ == "__main__":
    main()
