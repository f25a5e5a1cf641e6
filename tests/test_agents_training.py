"""The training library and scripts/train.py: runs, checkpoints on Ctrl-C, resume, TensorBoard steps."""

import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from agents.checkpoints import CheckpointError, latest_checkpoint
from agents.training import Terminated, TrainConfig, resume, start_run, train
from kd_env.errors import UserError

pytestmark = pytest.mark.integration  # training runs, signals and spawned processes

ROOT = Path(__file__).resolve().parents[1]


def config(small_env_kwargs, tmp_path, agent="reinforce", **changes):
    fields = dict(agent=agent, total_steps=40, seed=0, env_kwargs=small_env_kwargs,
                  agent_kwargs={"advantage": "step", "update_every": 4}, logdir=str(tmp_path), progress_bar=False)
    return TrainConfig(**{**fields, **changes})


def scalar_steps(run_dir, tag, purge=True):
    """The steps of ``tag``; ``purge=False`` reads what the files hold, ignoring TensorBoard's purge events."""
    events = EventAccumulator(str(run_dir), size_guidance={"scalars": 0}, purge_orphaned_data=purge)
    events.Reload()
    return [event.step for event in events.Scalars(tag)]


def test_ctrl_c_checkpoints_and_resume_continues_the_run(small_env_kwargs, tmp_path):
    seen = []

    def interrupt_at_25(info):
        seen.append(info)
        if len(seen) == 25:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(config(small_env_kwargs, tmp_path), callback=interrupt_at_25)
    (run_dir,) = tmp_path.iterdir()
    assert run_dir.name.startswith("TeacherSelection-v1__reinforce__0__")
    checkpoint = latest_checkpoint(run_dir)
    assert json.loads((checkpoint / "progress.json").read_text())["env_steps"] == 25
    assert json.loads((checkpoint / "agent" / "agent.json").read_text())["name"] == "reinforce"

    result = resume(run_dir)
    assert result.env_steps == 40 and 0.0 < result.test_accuracy <= 1.0 and result.wall_time_s > 0
    state = json.loads((run_dir / "summary.json").read_text())
    assert state["env_steps"] == 40
    # One global step per env step, strictly increasing across the interruption.
    assert scalar_steps(run_dir, "charts/reward") == list(range(1, 41))
    # Episodes of 16 steps; the resumed run starts a new episode at step 26, which would end at 41.
    assert scalar_steps(run_dir, "env/dev_accuracy") == [16]
    assert len(scalar_steps(run_dir, "losses/policy_loss")) >= 5
    assert scalar_steps(run_dir, "env/selection_rate/synthetic-teacher-0")[-1] == 40


def test_a_run_with_basic_info_logs_what_the_env_reports(small_env_kwargs, tmp_path):
    """``info_level="basic"`` leaves out the step diagnostics: the run logs rewards and episode ends."""
    result = train(config({**small_env_kwargs, "info_level": "basic"}, tmp_path, agent="avg_kd", agent_kwargs={}))
    assert result.env_steps == 40
    run_dir = Path(result.run_dir)
    assert scalar_steps(run_dir, "charts/reward") == list(range(1, 41))
    assert scalar_steps(run_dir, "env/dev_accuracy") == [16, 32]
    events = EventAccumulator(str(run_dir))
    events.Reload()
    assert not [tag for tag in events.Tags()["scalars"] if tag.startswith("env/selection_rate")]


def test_sigterm_checkpoints_like_ctrl_c(small_env_kwargs, tmp_path):
    def terminate_at_10(info):
        if terminate_at_10.steps == 10:
            os.kill(os.getpid(), signal.SIGTERM)
        terminate_at_10.steps += 1

    terminate_at_10.steps = 1
    with pytest.raises(Terminated):
        train(config(small_env_kwargs, tmp_path), callback=terminate_at_10)
    (run_dir,) = tmp_path.iterdir()
    assert json.loads((latest_checkpoint(run_dir) / "progress.json").read_text())["env_steps"] == 10
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the handler lives only while a run learns
    assert resume(run_dir).env_steps == 40


def test_periodic_checkpoints_keep_only_the_newest(small_env_kwargs, tmp_path):
    seen = []

    def interrupt_at_23(info):
        seen.append([path.name[:17] for path in tmp_path.glob("*/checkpoints/*")])
        if len(seen) == 23:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(config(small_env_kwargs, tmp_path), callback=interrupt_at_23, checkpoint_every=10)
    # The callback runs after the periodic checkpoint of its step.
    assert seen[8] == [] and seen[9] == seen[18] == ["step-000000000010"] and seen[19] == ["step-000000000020"]
    assert [path.name[:17] for path in tmp_path.glob("*/checkpoints/*")] == ["step-000000000023"]


def test_sigkill_then_resume_logs_every_step_once(tmp_path):
    """A killed run resumes from its last periodic checkpoint; the steps it logged after that are
    purged from TensorBoard, not shown twice."""
    command = [sys.executable, str(ROOT / "scripts" / "train.py"), "--agent", "avg_kd", "--total-steps", "1000000",
               "--logdir", str(tmp_path), "--checkpoint-every", "50", "--env-kwargs", "task=synthetic",
               'task_options={"num_train": 128, "num_dev": 32, "num_test": 32}', "batch_size=16"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while not list(tmp_path.glob("*/checkpoints/step-000000000100-*")) and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.3)  # steps past the checkpoint, logged by the process about to die
    finally:
        process.kill()
        process.wait()
    (run_dir,) = tmp_path.iterdir()
    saved = json.loads((latest_checkpoint(run_dir) / "progress.json").read_text())["env_steps"]
    assert saved >= 100 and saved % 50 == 0
    result = resume(run_dir, total_steps=saved + 20)
    assert result.env_steps == saved + 20
    assert scalar_steps(run_dir, "charts/reward") == list(range(1, saved + 21))
    assert scalar_steps(run_dir, "charts/reward", purge=False) == list(range(1, saved + 21))


def test_resume_drops_events_logged_after_the_checkpoint_from_the_files(tmp_path):
    from torch.utils.tensorboard import SummaryWriter

    from agents.tensorboard import drop_events_after

    writer = SummaryWriter(str(tmp_path))
    for step in range(1, 11):
        writer.add_scalar("charts/reward", 0.5, step)
    writer.close()
    assert drop_events_after(tmp_path, 6) == 4
    assert scalar_steps(tmp_path, "charts/reward", purge=False) == [1, 2, 3, 4, 5, 6]


@pytest.mark.parametrize("damage", ["truncated_student", "no_agent", "no_progress", "no_config", "bad_json", "extra_key",
                                    "missing_key", "bad_total_steps"])
def test_damaged_run_folder_names_what_is_wrong(small_env_kwargs, tmp_path, damage):
    run_dir = Path(train(config(small_env_kwargs, tmp_path, agent="avg_kd", total_steps=4, agent_kwargs={})).run_dir)
    checkpoint = latest_checkpoint(run_dir)
    config_file = run_dir / "config.json"
    saved = json.loads(config_file.read_text())
    if damage == "truncated_student":
        student = checkpoint / "student.pt"
        student.write_bytes(student.read_bytes()[:100])
        message = "student.pt is damaged or not a checkpoint"
    elif damage == "no_agent":
        shutil.rmtree(checkpoint / "agent")
        message = "is damaged: agent/agent.json missing"
    elif damage == "no_progress":
        (checkpoint / "progress.json").unlink()
        message = "is damaged: progress.json missing"
    elif damage == "no_config":
        config_file.unlink()
        message = "is not a run folder: it has no config.json"
    elif damage == "bad_json":
        config_file.write_text(config_file.read_text()[:-5])
        message = "config.json is not readable JSON"
    elif damage == "extra_key":
        config_file.write_text(json.dumps({**saved, "colour": "red"}))
        message = r"config.json is not a run config: unexpected \['colour'\]"
    elif damage == "missing_key":
        del saved["agent"]
        config_file.write_text(json.dumps(saved))
        message = "config.json is not a run config: .*agent"
    else:
        config_file.write_text(json.dumps({**saved, "total_steps": "many"}))
        message = "config.json is not a run config: total_steps must be an integer"
    with pytest.raises(CheckpointError, match=message):
        resume(run_dir)


def test_a_run_stopped_before_its_first_checkpoint_resumes_from_step_0(small_env_kwargs, tmp_path):
    """A SIGTERM while the run is being built leaves its folder with config.json and no checkpoint."""
    started = start_run(config(small_env_kwargs, tmp_path, agent="avg_kd", total_steps=6, agent_kwargs={}))
    started.env.close()
    (run_dir,) = tmp_path.iterdir()
    assert not (run_dir / "checkpoints").exists()
    assert resume(run_dir).env_steps == 6
    assert scalar_steps(run_dir, "charts/reward", purge=False) == list(range(1, 7))


@pytest.mark.parametrize("changes, message", [
    ({"total_steps": -5}, "total_steps must be >= 1, got -5"),
    ({"seed": -1}, "seed must be >= 0, got -1"),
    ({"agent": "dqn"}, "unknown agent 'dqn'"),
    ({"env_kwargs": {"batch_size": 0}}, "batch_size must be >= 1, got 0"),
])
def test_a_refused_run_leaves_no_folder(small_env_kwargs, tmp_path, changes, message):
    with pytest.raises(UserError, match=message):
        train(config(small_env_kwargs, tmp_path, **changes))
    assert list(tmp_path.iterdir()) == []


def test_bad_checkpoint_every_is_refused_before_the_env_is_built(tmp_path):
    with pytest.raises(UserError, match="checkpoint_every must be >= 1, got -1"):
        train(config({"task": "no-such-task"}, tmp_path), checkpoint_every=-1)
    assert list(tmp_path.iterdir()) == []


def test_an_error_before_the_first_step_is_not_hidden_by_the_final_checkpoint(small_env_kwargs, tmp_path):
    started = start_run(config(small_env_kwargs, tmp_path, agent="avg_kd", agent_kwargs={}))

    def fail(*args, **kwargs):
        raise RuntimeError("the agent's own error")

    started.agent.learn = fail
    with pytest.raises(RuntimeError, match="the agent's own error"):
        started.finish()


def test_sb3_run_logs_sb3_tags_at_env_steps(small_env_kwargs, tmp_path):
    result = train(config(small_env_kwargs, tmp_path, agent="ppo", total_steps=32,
                          agent_kwargs={"algo_kwargs": {"n_steps": 16, "batch_size": 16}}))
    assert result.env_steps == 32
    assert scalar_steps(result.run_dir, "train/policy_gradient_loss") == [32]
    assert scalar_steps(result.run_dir, "charts/reward") == list(range(1, 33))


def load_train_script():
    spec = importlib.util.spec_from_file_location("train_script", ROOT / "scripts" / "train.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_train_script_trains_and_resumes(tmp_path, capsys):
    script = load_train_script()
    env_kwargs = ["--env-kwargs", "task=synthetic", 'task_options={"num_train": 128, "num_dev": 32, "num_test": 32}', "batch_size=16"]
    assert script.main(["--agent", "avg_kd", "--total-steps", "8", "--logdir", str(tmp_path)] + env_kwargs) == 0
    assert "env steps: 8" in capsys.readouterr().out
    (run_dir,) = tmp_path.iterdir()
    assert script.main(["--resume", str(run_dir), "--total-steps", "12"]) == 0
    assert "env steps: 12" in capsys.readouterr().out
