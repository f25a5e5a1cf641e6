"""The model card of a distilled student (``OUT/README.md``): what it learned from, how, and how well.

Hugging Face model cards are README files with a YAML header; the header's ``pipeline_tag`` and
``library_name`` tell the hub and tools how to run the model.
"""

from __future__ import annotations


def percent(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"


def model_card(summary: dict) -> str:
    """Markdown from ``experiments.distill.distill``'s summary."""
    runs, agent = summary["runs"], summary["agent"]
    main = runs[agent]
    lines = [
        "---",
        "pipeline_tag: text-classification",
        "library_name: transformers" if summary["student"] == "transformer" else "library_name: kd_env",
        "tags: [knowledge-distillation, multi-teacher, kd_env]",
        "---",
        "",
        f"# Student distilled from {len(summary['teachers'])} teachers on `{summary['task']}`",
        "",
        *(f"> **Warning:** {warning}." for warning in summary.get("warnings", [])),
        *([""] if summary.get("warnings") else []),
        f"A `{summary['student']}` student trained with kd_env's multi-teacher distillation environment; the agent "
        f"`{agent}` chose, per training instance, which teachers it learned from ({summary['epochs']} "
        f"epoch{'s' if summary['epochs'] != 1 else ''} of the student, {main['env_steps']} env steps in all, seed {summary['seed']}).",
        "",
        f"Size: {summary['student_size']['parameters']:,} parameters, {summary['student_size']['disk_mb']:.1f} MB on disk"
        + (f"; {summary['student_size']['ms_per_text']:.2f} ms per text (batches of 32, CPU)." if "ms_per_text" in summary["student_size"] else "."),
        "",
        f"Settings profile `{summary['spec']['profile']}` (kd_env.config) with: " + ", ".join(f"`{key}={value}`" for key, value in sorted(summary["settings"].items()))
        + "; agent settings: " + (", ".join(f"`{key}={value}`" for key, value in sorted(summary["agent_kwargs"].items())) or "defaults") + ".",
        "",
        "## Use",
        "",
    ]
    if summary["student"] == "transformer":
        lines += ["```python", "from transformers import pipeline", "", f'classify = pipeline("text-classification", model="{summary["out"]}")',
                  'classify("some text")', "```"]
    else:
        lines += ["```python", "import kd_env", "", f'student = kd_env.load_student("{summary["out"]}")', 'student.predict(["some text"])', "```"]
    sizes = summary["sizes"]
    lines += [
        "",
        "## Data",
        "",
        f"Task `{summary['task']}`: classes {', '.join(f'`{c}`' for c in summary['classes'])}; "
        f"{sizes['train']} training, {sizes['dev']} dev and {sizes['test']} test instances.",
        "",
        "## Teachers",
        "",
        "| teacher | dev accuracy | test accuracy |",
        "|---|---|---|",
        *(f"| {name} | {percent(acc['dev_accuracy'])} | {percent(acc['test_accuracy'])} |" for name, acc in summary["teachers"].items()),
        "",
        "## Results",
        "",
        "| student trained by | dev accuracy | dev macro-F1 | test accuracy | test macro-F1 |",
        "|---|---|---|---|---|",
        *(f"| {label}{' (this model)' if label == agent else ''} | {percent(run['dev_accuracy'])} | {percent(run['dev_macro_f1'])} | "
          f"{percent(run['test_accuracy'])} | {percent(run['test_macro_f1'])} |" for label, run in runs.items()),
        "",
    ]
    selection = main.get("selection") or {}
    if selection:
        lines += [
            "## What the agent selected",
            "",
            "How often the trained agent selects each teacher on the training split, when that teacher is right and when it is wrong"
            " (an instance with no teacher selected learns from " + ("all teachers" if summary["settings"].get("empty_selection") == "all_teachers" else "its hard label only") + "):",
            "",
            "| teacher | selected when right | selected when wrong |",
            "|---|---|---|",
            *(f"| {name} | {percent(right)} | {percent(wrong)} |"
              for name, right, wrong in zip(selection["teachers"], selection["rate_when_correct"], selection["rate_when_wrong"])),
            "",
        ]
    lines += ["## Training run", "", "TensorBoard: `tensorboard --logdir runs` in this folder. The numbers above are in `distill.json`; "
              "`kd-env distill --config distill.json --out NEW_FOLDER` runs it again (its `spec` holds every option).", ""]
    return "\n".join(lines)
