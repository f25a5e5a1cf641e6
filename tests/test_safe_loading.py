"""Saved agents and checkpoints are data: loading a tampered file refuses it and never runs its code."""

import gymnasium as gym
import pytest
import torch

import agents
from agents.checkpoints import CheckpointError, latest_checkpoint, load_student
from agents.training import TrainConfig, train
from agents.wrappers import ContinuingStudent
from pickle_payload import Payload


def make_env(kwargs):
    return ContinuingStudent(gym.make("kd_env/TeacherSelection-v0", **kwargs))


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
