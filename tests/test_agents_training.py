"""The training library and scripts/train.py: runs, checkpoints on Ctrl-C, resume, TensorBoard steps."""

import importlib.util
import json
from pathlib import Path

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from agents.training import TrainConfig, resume, train

ROOT = Path(__file__).resolve().parents[1]


def config(small_env_kwargs, tmp_path, agent="reinforce", **changes):
    fields = dict(agent=agent, total_steps=40, seed=0, env_kwargs=small_env_kwargs,
                  agent_kwargs={"advantage": "step", "update_every": 4}, logdir=str(tmp_path), progress_bar=False)
    return TrainConfig(**{**fields, **changes})


def scalar_steps(run_dir, tag):
    events = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
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
    assert run_dir.name.startswith("TeacherSelection-v0__reinforce__0__")
    assert json.loads((run_dir / "progress.json").read_text())["env_steps"] == 25
    assert json.loads((run_dir / "agent" / "agent.json").read_text())["name"] == "reinforce"

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
