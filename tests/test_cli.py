"""The kd-env CLI: subcommands, one option syntax with help on every flag, the ad-hoc compare grid, and
bad input refused in one line before anything is computed."""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from experiments.grids import GridSpec, parse_seeds
from kd_cli.app import app
from kd_cli.env_options import NOT_FLAGS, flag_name, help_text
from kd_env.config import PROFILES, EnvConfig
from kd_cli.options import parse_grid, parse_pairs

runner = CliRunner()
SUBCOMMANDS = ("prepare", "train", "compare", "suite", "sweep", "distill", "bench")
SMALL = ["--task-options", "num_train=128", "--task-options", "num_dev=32", "--task-options", "num_test=64", "--env-kwargs", "batch_size=16"]


def test_help_lists_subcommands_and_every_flag_has_help():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0 and all(name in result.output for name in SUBCOMMANDS)
    group = typer.main.get_command(app)
    for name in SUBCOMMANDS:
        command = group.commands[name]
        assert command.help, name
        for param in command.params:
            assert getattr(param, "help", None), f"{name} {param.name}"
        assert runner.invoke(app, [name, "--help"]).exit_code == 0


ENV_SUBCOMMANDS = {"train": (), "compare": ("task",), "sweep": (), "distill": (), "bench": ()}
"""Subcommands with every env flag, less the fields they take another way (compare: a repeatable --task)."""


def test_every_config_field_is_a_flag_with_its_docstring():
    """The env flags are built from EnvConfig: a new field is a new flag, its help the field's docstring."""
    group = typer.main.get_command(app)
    for name, exclude in ENV_SUBCOMMANDS.items():
        params = {opt: param for param in group.commands[name].params for opt in param.opts}
        for field in EnvConfig.__dataclass_fields__:
            if field in NOT_FLAGS or field in exclude:
                continue
            flag = flag_name(field)
            assert flag in params, f"{name} has no {flag}"
            assert params[flag].help.startswith(help_text(field)), f"{name} {flag}"
        assert "--profile" in params and "--env-kwargs" in params
    prepare = {opt for param in group.commands["prepare"].params for opt in param.opts}
    assert {"--task", "--teacher", "--task-options"} <= prepare


def test_choices_come_from_the_registries():
    result = runner.invoke(app, ["train", "--agent", "avg_kd", "--total-steps", "5", "--reward", "nope"])
    assert result.exit_code == 2 and "ce_gain" in result.output and "dev_gain" in result.output
    result = runner.invoke(app, ["compare", "--preset", "huge"])
    assert result.exit_code == 2 and "demo" in result.output
    help_text_ = runner.invoke(app, ["train", "--help"], env={"COLUMNS": "400"}).output
    assert all(name in help_text_ for name in ("bow", "transformer", "mtkd_rl", "ppo_instance", "weighted_ce", "all_teachers", "recommended"))
    assert "(default: ce_gain)" in help_text_  # the default profile's value, not the env's


def test_env_flags_profile_and_env_kwargs_flow_into_the_run(monkeypatch):
    import agents.training

    seen = {}

    def capture(config, **_):
        seen["config"] = config
        raise ValueError("stop")

    monkeypatch.setattr(agents.training, "train", capture)
    args = ["train", "--agent", "avg_kd", "--total-steps", "5", "--task", "synthetic", "--batch-size", "16", "--teacher", "biased-specialists",
            "--no-tau-squared", "--feature", "semantic", "--feature", "teacher_ce", "--student-options", "num_layers=2",
            "--env-kwargs", "alpha=0.3", "--env-kwargs", "batch_size=8"]
    runner.invoke(app, args)
    assert seen["config"].env_kwargs == {**PROFILES["recommended"].kwargs(), "task": "synthetic", "batch_size": 16, "teachers": ["biased-specialists"],
                                         "tau_squared": False, "features": ["semantic", "teacher_ce"], "student_options": {"num_layers": 2}, "alpha": 0.3}
    runner.invoke(app, ["train", "--agent", "avg_kd", "--total-steps", "5", "--profile", "paper"])
    assert seen["config"].env_kwargs == {}  # the paper profile is the env's defaults


def test_a_pool_name_works_wherever_teachers_are_named(tmp_path, monkeypatch):
    import experiments.compare
    from kd_env.teachers import resolve_teacher_specs

    seen = []
    monkeypatch.setattr(experiments.compare, "run_grid", lambda preset, *args: seen.append(preset) or 0)
    monkeypatch.setattr("experiments.report_files.write_report", lambda *args: "report")
    out = tmp_path / "out"
    result = runner.invoke(app, ["compare", "--task", "twitter-sentiment", "--teacher", "biased-specialists", "--agents", "avg_kd", "--out", str(out)])
    assert result.exit_code == 0, result.output
    grid = tmp_path / "grid.yaml"
    grid.write_text("task: twitter-sentiment\nagents: avg_kd\nteachers: biased-specialists\n")
    result = runner.invoke(app, ["compare", "--grid", str(grid), "--out", str(out)])
    assert result.exit_code == 0, result.output
    grid.write_text("task: twitter-sentiment\nagents: avg_kd\nteachers: [biased-specialists, minilm-l6-head]\n")
    assert runner.invoke(app, ["compare", "--grid", str(grid), "--out", str(out)]).exit_code == 0
    teachers = [preset.common_env_kwargs["teachers"] for preset in seen]
    assert teachers == [["biased-specialists"], "biased-specialists", ["biased-specialists", "minilm-l6-head"]]
    names = [[spec.name for spec in resolve_teacher_specs(t)] for t in teachers]
    clusters = ["cluster0-specialist", "cluster1-specialist", "cluster2-specialist"]
    assert names == [clusters, clusters, [*clusters, "minilm-l6-head"]]


def test_option_syntax_pairs_json_objects_and_grids():
    assert parse_pairs(["batch_size=16", "reward=ce_gain", "features=[\"semantic\"]", "x=null"], "--env-kwargs") == {
        "batch_size": 16, "reward": "ce_gain", "features": ["semantic"], "x": None}
    assert parse_pairs(['{"a": 1, "b": {"c": 2}}', "a=3"], "--env-kwargs") == {"a": 3, "b": {"c": 2}}
    assert parse_grid(["reward=[\"student_ce\", \"ce_gain\"]"], "--env-grid") == {"reward": ["student_ce", "ce_gain"]}
    for bad in (["batch_size"], ["=3"], ["{not json"]):
        with pytest.raises(typer.BadParameter):
            parse_pairs(bad, "--env-kwargs")
    with pytest.raises(typer.BadParameter, match="JSON list"):
        parse_grid(["reward=ce_gain"], "--env-grid")


def test_seeds_ranges_and_lists():
    assert parse_seeds("0-4") == (0, 1, 2, 3, 4)
    assert parse_seeds("0,2,5") == (0, 2, 5)
    assert parse_seeds("0-2, 7") == (0, 1, 2, 7)
    assert parse_seeds(3) == (3,) and parse_seeds([1, 0]) == (0, 1)
    for bad in ("0-", "a", "3-1", "1..3", ""):
        with pytest.raises(ValueError, match="malformed seeds"):
            parse_seeds(bad)


def test_ad_hoc_grid_from_flags_and_file(tmp_path):
    spec = GridSpec.from_mapping({"tasks": ["csv:a.csv"], "agents": "reinforce, avg_kd,ca_mkd", "seeds": "0-1", "student": "transformer",
                                  "teachers": ["minilm-l6", "ckpt/dir"], "epochs": 2, "env_kwargs": {"batch_size": 16}})
    preset = spec.to_preset()
    assert preset.tasks == ("csv:a.csv",) and preset.seeds == (0, 1) and preset.epochs == 2
    assert [e.label for e in preset.entries] == ["reinforce", "avg_kd", "ca_mkd"]
    assert preset.entries[0].epoch_kwargs == {"pretrain_student_steps": 1, "pretrain_selector_steps": 1}  # the preset recipe
    assert preset.entries[2].env_id == "kd_env/TeacherWeighting-v1"
    assert preset.common_env_kwargs["teachers"] == ["minilm-l6", "ckpt/dir"] and preset.common_env_kwargs["batch_size"] == 16
    assert preset.common_env_kwargs["reward"] == "ce_gain" and not preset.single_teachers

    grid = tmp_path / "grid.yaml"
    grid.write_text("task: csv:a.csv\nagents: [no_kd, ppo]\nseeds: 0-2\nepochs: 4\n")
    from_file = GridSpec.from_file(grid, {"seeds": "5"})
    assert from_file.agents == ("no_kd", "ppo") and from_file.seeds == (5,) and from_file.epochs == 4
    (tmp_path / "grid.json").write_text(json.dumps({"tasks": ["synthetic"], "agents": ["avg_kd"], "colour": 1}))
    with pytest.raises(ValueError, match=r"unknown grid keys \['colour'\]"):
        GridSpec.from_file(tmp_path / "grid.json")


@pytest.mark.integration
@pytest.mark.parametrize("population", [[], ["--no-population-seeds"]], ids=["population", "separate"])
def test_compare_runs_an_ad_hoc_grid(population, tmp_path):
    out = tmp_path / "out"
    result = runner.invoke(app, ["compare", "--task", "synthetic", "--agents", "no_kd,avg_kd", "--seeds", "0,1", "--epochs", "1",
                                 *SMALL, "--out", str(out), "--logdir", str(tmp_path / "runs"), *population])
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert sorted((r["entry"], r["seed"]) for r in records) == [("avg_kd", 0), ("avg_kd", 1), ("no_kd", 0), ("no_kd", 1)]
    assert all(r["status"] == "ok" for r in records)
    assert (out / "table.md").is_file()


@pytest.fixture
def no_compute(monkeypatch):
    """Any training, grid or env construction fails the test: errors must come first."""
    import experiments.compare
    import experiments.distill

    def refuse(*args, **kwargs):
        raise AssertionError("compute started before the input was checked")

    monkeypatch.setattr(experiments.compare, "run_grid", refuse)
    monkeypatch.setattr(experiments.distill, "task_facts", refuse)
    monkeypatch.setattr(experiments.distill, "train", refuse)


@pytest.mark.parametrize("args, message", [
    (["compare", "--task", "synthetic", "--agents", "avg_kd,dqn"], "unknown agent 'dqn'"),
    (["compare", "--task", "synthetic", "--seeds", "0-x"], "malformed seeds '0-x'"),
    (["compare", "--preset", "quick", "--agents", "avg_kd"], "either --preset or an ad-hoc grid"),
    (["compare", "--task", "synthetic", "--agents", "reinforce", "--epochs", "1"], "reinforce's recipe pre-trains .* give at least 2 epochs"),
    (["distill", "--task", "synthetic", "--out", "OUT", "--epochs", "1"], "reinforce's recipe pre-trains .* give at least 2 epochs"),
    (["distill", "--task", "synthetic"], "distill needs --out"),
    (["compare", "--preset", "quick", "--report-only", "--out", "OUT"], "no results in .*results.jsonl to report"),
    (["sweep", "--agents", "avg_kd,dqn", "--total-steps", "5"], "unknown agent 'dqn'"),
    (["train", "--agent", "dqn", "--total-steps", "5"], "unknown agent 'dqn'"),
    (["distill", "--task", "synthetic", "--out", "OUT", "--agent", "dqn"], "unknown agent 'dqn'"),
    (["distill", "--task", "synthetic", "--out", "OUT", "--teacher", "MISSING"], "checkpoint folder .*no-such-teacher does not exist"),
])
def test_bad_input_is_one_line_before_compute(tmp_path, no_compute, args, message):
    args = [a.replace("OUT", str(tmp_path / "out")).replace("MISSING", str(tmp_path / "no-such-teacher")) for a in args]
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    error = result.stderr.strip()
    assert error.startswith("error: ") and "\n" not in error
    assert re.search(message, error), error


@pytest.mark.parametrize("command", [["distill", "--task", "synthetic"], ["compare", "--task", "synthetic", "--agents", "avg_kd"]])
def test_out_under_a_file_is_one_line_before_compute(tmp_path, no_compute, command):
    (tmp_path / "afile").write_text("mine")
    result = runner.invoke(app, [*command, "--out", str(tmp_path / "afile" / "sub")])
    assert result.exit_code == 2, result.output
    assert re.fullmatch(r"error: cannot create .*afile/sub: .*afile is a file, not a folder", result.stderr.strip())


def test_distill_overwrites_a_symlinked_out_keeping_the_link(tmp_path, monkeypatch):
    import experiments.distill

    target, link = tmp_path / "target", tmp_path / "out"
    target.mkdir()
    (target / "old.txt").write_text("old")
    link.symlink_to(target)

    class Stop(Exception):
        """Raised where the runs would start: the output folder is ready by then."""

    monkeypatch.setattr(experiments.distill, "task_facts", lambda *args: {})
    monkeypatch.setattr(experiments.distill, "pending_runs", lambda *args: (_ for _ in ()).throw(Stop()))
    with pytest.raises(Stop):
        experiments.distill.distill(experiments.distill.DistillSpec(task="synthetic", out=str(link), overwrite=True))
    assert link.is_symlink() and target.is_dir() and list(target.iterdir()) == []


def test_only_user_errors_are_one_line(monkeypatch):
    """A bug's ValueError shows its traceback; a UserError is one line with exit 2."""
    import experiments.throughput

    result = runner.invoke(app, ["bench", "--steps", "0", "--task", "synthetic"])
    assert result.exit_code == 2 and result.stderr.strip() == "error: steps must be >= 1, got 0"

    def bug(*args):
        raise ValueError("an internal invariant broke")

    monkeypatch.setattr(experiments.throughput, "env_throughput", bug)
    result = runner.invoke(app, ["bench", "--task", "synthetic"])
    assert result.exit_code == 1 and isinstance(result.exception, ValueError)


@pytest.mark.parametrize("env_kwargs, message", [("alpha=nan", "alpha must be a finite number, got 'nan'"),
                                                 ("temperature=abc", "temperature must be a finite number, got 'abc'")])
def test_text_where_a_number_belongs_is_one_line(tmp_path, env_kwargs, message):
    result = runner.invoke(app, ["train", "--agent", "avg_kd", "--total-steps", "5", "--logdir", str(tmp_path),
                                 "--task", "synthetic", "--env-kwargs", env_kwargs])
    assert result.exit_code == 2 and result.stderr.strip() == f"error: {message}"
    assert list(tmp_path.iterdir()) == []


def test_distill_refuses_a_non_empty_out(tmp_path, no_compute):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    result = runner.invoke(app, ["distill", "--task", "synthetic", "--out", str(out)])
    assert result.exit_code == 2 and "not empty; pass --overwrite" in result.stderr
    assert (out / "keep.txt").read_text() == "mine"


@pytest.mark.integration
def test_bench_reports_env_steps_per_second():
    result = runner.invoke(app, ["bench", "--steps", "5", "--task", "synthetic", *SMALL])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["steps"] == 5


@pytest.mark.integration
def test_old_entry_points_still_run():
    """The old entry points still run: aliases of kd-env compare and kd-env train."""
    root = Path(__file__).resolve().parents[1]
    for script, flag in (("compare.py", "--preset"), ("train.py", "--checkpoint-every")):
        result = subprocess.run([sys.executable, str(root / "scripts" / script), "--help"], capture_output=True, text=True, timeout=120)
        assert result.returncode == 0 and flag in result.stdout, result.stderr


def test_distill_output_and_card_call_out_a_blind_selector(tmp_path, monkeypatch):
    import experiments.distill
    from experiments.model_card import model_card

    warning = "the selector selects no teacher, right or wrong, so the student equals Avg-KD's (an empty selection means all teachers)"
    run = {"dev_accuracy": 0.5, "test_accuracy": 0.5, "dev_macro_f1": 0.4, "test_macro_f1": 0.4, "env_steps": 10,
           "selection": {"teachers": ["a"], "rate_when_correct": [0.0], "rate_when_wrong": [0.0]}}
    summary = {"task": "synthetic", "agent": "reinforce", "student": "head", "epochs": 2, "seed": 0, "out": str(tmp_path), "spec": {"profile": "recommended"},
               "settings": {"empty_selection": "all_teachers"}, "agent_kwargs": {}, "classes": ["a", "b"], "sizes": {"train": 1, "dev": 1, "test": 1},
               "teachers": {"a": {"dev_accuracy": 0.5, "test_accuracy": 0.5}}, "student_size": {"parameters": 10, "disk_mb": 0.1},
               "runs": {"reinforce": run}, "warnings": [warning]}
    monkeypatch.setattr(experiments.distill, "distill", lambda spec: summary)
    result = runner.invoke(app, ["distill", "--task", "synthetic", "--out", str(tmp_path / "out")])
    assert result.exit_code == 0 and f"warning: {warning}" in result.stderr
    card = model_card(summary)
    assert f"> **Warning:** {warning}." in card and "learns from all teachers" in card and "Size: 10 parameters" in card


def test_max_steps_cuts_a_run_and_keeps_joint_training():
    from agents.training import TrainConfig
    from experiments.distill import DistillSpec, capped

    stages = {"pretrain_student_steps": 1, "pretrain_selector_steps": 1}
    config = TrainConfig(agent="reinforce", total_steps=400, agent_kwargs={"pretrain_student_steps": 100, "pretrain_selector_steps": 100, "advantage": "instance"})
    cut = capped(config, 40, stages)
    assert cut.total_steps == 40 and cut.agent_kwargs == {"pretrain_student_steps": 10, "pretrain_selector_steps": 10, "advantage": "instance"}
    assert capped(config, 1000, stages) == config and capped(config, None, stages) == config
    with pytest.raises(ValueError, match="max_steps must be >= 1"):
        DistillSpec(task="synthetic", out="out", max_steps=0)
