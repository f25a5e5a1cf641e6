"""Saved agents and checkpoints are data: loading a tampered file refuses it and never runs its code."""

import json
from pathlib import Path

import gymnasium as gym
import pytest
import torch

import agents
from agents.checkpoints import CheckpointError, latest_checkpoint, load_student
from agents.training import TrainConfig, resume, train
from agents.wrappers import ContinuingStudent
from kd_env.errors import UserError
from pickle_payload import Payload, write_sb3_model


def make_env(kwargs):
    return ContinuingStudent(gym.make("kd_env/TeacherSelection-v1", **kwargs))


@pytest.mark.parametrize("name", ["reinforce", "random"])
def test_tampered_agent_state_does_not_run_code(name, small_env_kwargs, tmp_path):
    env = make_env(small_env_kwargs)
    path = agents.make(name, env, seed=0).save(tmp_path / name)
    marker = tmp_path / "payload_ran"
    torch.save({"policy": Payload(marker)}, path / "state.pt")
    with pytest.raises(Exception):
        agents.load(path, env)
    assert not marker.exists()


@pytest.mark.integration
def test_tampered_student_checkpoint_does_not_run_code(small_env_kwargs, tmp_path):
    result = train(TrainConfig(agent="avg_kd", total_steps=4, env_kwargs=small_env_kwargs, logdir=str(tmp_path / "runs"),
                               progress_bar=False))
    marker = tmp_path / "payload_ran"
    torch.save({"student": Payload(marker)}, latest_checkpoint(result.run_dir) / "student.pt")
    env = make_env(small_env_kwargs)
    env.reset(seed=0)
    with pytest.raises(CheckpointError, match="student.pt is damaged or not a checkpoint"):
        load_student(result.run_dir, env)
    assert not marker.exists()


def disguise_as_sb3(agent_dir, marker):
    """What an attacker does to a saved agent: name it ``ppo`` and add a model.zip that runs code."""
    (agent_dir / "agent.json").write_text(json.dumps({"name": "ppo", "config": {}}))
    write_sb3_model(agent_dir / "model.zip", marker)


@pytest.mark.integration
def test_resume_refuses_an_agent_renamed_to_sb3_without_running_its_zip(small_env_kwargs, tmp_path):
    result = train(TrainConfig(agent="avg_kd", total_steps=4, env_kwargs=small_env_kwargs, logdir=str(tmp_path / "runs"),
                               progress_bar=False))
    marker = tmp_path / "payload_ran"
    disguise_as_sb3(latest_checkpoint(result.run_dir) / "agent", marker)
    with pytest.raises(CheckpointError, match="holds agent 'ppo', not 'avg_kd'"):
        resume(result.run_dir, total_steps=8)
    assert not marker.exists()


def test_load_runs_an_sb3_zip_only_when_the_caller_names_an_sb3_agent(small_env_kwargs, tmp_path):
    env = make_env(small_env_kwargs)
    path = agents.make("avg_kd", env, seed=0).save(tmp_path / "agent")
    marker = tmp_path / "payload_ran"
    disguise_as_sb3(path, marker)
    with pytest.raises(UserError, match="SB3 agent 'ppo'.*can run code"):
        agents.load(path, env)
    with pytest.raises(UserError, match="holds agent 'ppo', not 'avg_kd'"):
        agents.load(path, env, name="avg_kd")
    assert not marker.exists()


@pytest.mark.integration
def test_resume_refuses_an_env_id_that_would_import_a_module(small_env_kwargs, tmp_path, monkeypatch):
    result = train(TrainConfig(agent="avg_kd", total_steps=4, env_kwargs=small_env_kwargs, logdir=str(tmp_path / "runs"),
                               progress_bar=False))
    marker = tmp_path / "module_imported"
    (tmp_path / "planted_module.py").write_text(f"open({str(marker)!r}, 'w').close()\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    config_file = Path(result.run_dir) / "config.json"
    config_file.write_text(json.dumps({**json.loads(config_file.read_text()), "env_id": "planted_module:Foo-v0"}))
    with pytest.raises(CheckpointError, match="env_id 'planted_module:Foo-v0' is not one of"):
        resume(result.run_dir, total_steps=8)
    assert not marker.exists()
