"""Named comparison grids. Every agent shares the env settings of its preset, so differences in the
student come from the teacher weighting alone.

Shared settings: the ``recommended`` profile of ``kd_env.config`` (``LEARNING_ENV`` is its difference
from the env's defaults, which says why each value). ``no_kd`` alone keeps the hard-label fallback:
selecting nothing is what it is.
"""

from __future__ import annotations

from agents.sb3 import InstanceSB3Agent
from experiments.compare import WEIGHT_ENV, GridEntry, Preset
from kd_env.config import PROFILES
from kd_env.features import STATIC_GROUPS

TEACHER_GROUPS = tuple(g for g in STATIC_GROUPS if g.startswith("teacher_"))
# The profile every preset runs (each report names it), and its env kwargs: the learning setup of the
# presets, tests/test_agents_learning.py and (checked by tests/test_agents_hyperparams.py) hyperparams/*.yml.
PROFILE = "recommended"
LEARNING_ENV = PROFILES[PROFILE].kwargs()
# The teachers of the text presets' published results: fine-tuned, the task default before the cheap
# head-tuned one (kd_env.teachers.pools).
FINE_TUNED = {"teachers": "fine-tuned"}
REINFORCE_SETTINGS = {"advantage": "instance", "update_every": 4, "learning_rate": 0.05}
PPO_SETTINGS = {"n_steps": 32, "batch_size": 32, "learning_rate": 0.03, "gamma": 0.0, "clip_range": 0.3}
PPO_INSTANCE_SETTINGS = dict(InstanceSB3Agent.default_algo_kwargs["ppo"])

REINFORCE = GridEntry(
    label="reinforce",
    agent="reinforce",
    agent_kwargs=dict(REINFORCE_SETTINGS),
    epoch_kwargs={"pretrain_student_steps": 1, "pretrain_selector_steps": 1},
    profile_selection=True,
)
PPO = GridEntry(
    label="ppo",
    agent="ppo",
    agent_kwargs={"algo_kwargs": dict(PPO_SETTINGS)},
    profile_selection=True,
)
# The same PPO with per-instance credit: each instance of a batch is one sub-env rewarded with its own
# instance reward (agents.instance_vec); n_steps counts env steps, each giving B samples.
PPO_INSTANCE = GridEntry(
    label="ppo_instance",
    agent="ppo_instance",
    agent_kwargs={"algo_kwargs": dict(PPO_INSTANCE_SETTINGS)},
    profile_selection=True,
)
NO_KD = GridEntry(label="no_kd", agent="no_kd", env_kwargs={"empty_selection": "hard_label"})
AVG_KD = GridEntry(label="avg_kd", agent="avg_kd")
CA_MKD = GridEntry(label="ca_mkd", agent="ca_mkd", env_id=WEIGHT_ENV)
BEST_TEACHER = GridEntry(label="best_teacher", agent="best_teacher")
MTKD_RL = GridEntry(label="mtkd_rl", agent="mtkd_rl", env_id=WEIGHT_ENV)
# The paper's REINFORCE: episode-return advantage, with the 3-stage schedule.
REINFORCE_PAPER = GridEntry(label="reinforce_paper", agent="reinforce", agent_kwargs={"advantage": "episode"},
                            epoch_kwargs={"pretrain_student_steps": 1, "pretrain_selector_steps": 1}, profile_selection=True)
# Privileged references (agents.heuristics): their students bound what per-instance selection can win,
# which the report's headroom table reads. Every preset runs ``correct_teachers``; ``oracle`` needs a
# task with a known answer.
CORRECT_TEACHERS = GridEntry(label="correct_teachers", agent="correct_teachers", agent_kwargs={"fallback": "lowest_ce"})
ORACLE = GridEntry(label="oracle", agent="oracle")

QUICK_ENTRIES = (NO_KD, AVG_KD, CA_MKD, REINFORCE, PPO, PPO_INSTANCE, CORRECT_TEACHERS)
FULL_ENTRIES = QUICK_ENTRIES + (
    BEST_TEACHER,
    GridEntry(label="random", agent="random"),
    GridEntry(label="ebkd", agent="ebkd", env_id=WEIGHT_ENV),
    GridEntry(label="mt_bert", agent="mt_bert", env_id=WEIGHT_ENV),
    MTKD_RL,
    REINFORCE_PAPER,
    GridEntry(label="a2c", agent="a2c", profile_selection=True),
    GridEntry(label="a2c_instance", agent="a2c_instance", profile_selection=True),
)

# The synthetic task in two regimes: noisy training labels, where the experts know more than the labels
# and selection has room (the preset's first regime), and clean ones, where hard labels alone are as good.
SYNTHETIC_REGIMES = {
    "synthetic-noisy": {"task": "synthetic", "task_options": {"label_noise": 0.4}},
    "synthetic-clean": {"task": "synthetic"},
}

PRESETS = {
    "synthetic": Preset(
        name="synthetic", tasks=tuple(SYNTHETIC_REGIMES), seeds=(0, 1, 2, 3, 4), epochs=20,
        common_env_kwargs=dict(LEARNING_ENV), entries=QUICK_ENTRIES + (ORACLE,), regimes=SYNTHETIC_REGIMES,
    ),
    "quick": Preset(
        name="quick", tasks=("twitter-sentiment",), seeds=(0, 1, 2), epochs=10,
        common_env_kwargs={**LEARNING_ENV, **FINE_TUNED, "student": "head"}, entries=QUICK_ENTRIES,
    ),
    "full": Preset(
        name="full", tasks=("twitter-sentiment", "bbc-news"), seeds=(0, 1, 2, 3, 4), epochs=3,
        common_env_kwargs={**LEARNING_ENV, **FINE_TUNED, "student": "transformer", "student_options": {"num_layers": 2}},
        entries=FULL_ENTRIES,
    ),
}


def _reinforce(label: str, env_kwargs: dict | None = None, stages: int = 1, **agent_kwargs) -> GridEntry:
    """A REINFORCE variant for the levers study; defaults are the ``REINFORCE`` entry's."""
    return GridEntry(
        label=label, agent="reinforce", env_kwargs=env_kwargs or {},
        agent_kwargs={**REINFORCE.agent_kwargs, **agent_kwargs},
        epoch_kwargs={"pretrain_student_steps": stages, "pretrain_selector_steps": stages},
        profile_selection=True,
    )


# The levers of learned selection, one at a time against the quick setting's REINFORCE: the reward, the
# advantage (paper: episode return), policy size, learning rate, the stage lengths, the feature set
# (teacher features only; the paper's semantic vector, teacher probabilities and teacher CE; no
# student-dependent features); and continuous weights (MTKD-RL style) against selection. ``dev_gain`` gives every instance the same reward, so it
# goes with batch-level advantages (``step``, ``episode``).
LEVER_ENTRIES = (
    NO_KD, AVG_KD, CA_MKD, REINFORCE, PPO, CORRECT_TEACHERS,
    BEST_TEACHER,
    MTKD_RL,
    _reinforce("reinforce:episode", advantage="episode"),
    _reinforce("reinforce:student_ce", env_kwargs={"reward": "student_ce"}),
    _reinforce("reinforce:student_loss", env_kwargs={"reward": "student_loss"}),
    _reinforce("reinforce:dev_gain+step", env_kwargs={"reward": "dev_gain"}, advantage="step"),
    _reinforce("reinforce:dev_gain+episode", env_kwargs={"reward": "dev_gain"}, advantage="episode"),
    _reinforce("reinforce:mlp64", hidden_sizes=(64,)),
    # A label-free per-instance reward (kd_env.rewards): it rewards the selections on a transfer set's
    # unlabelled instances too, where the batch-label rewards are silent.
    _reinforce("reinforce:probe_alignment", env_kwargs={"reward": "probe_alignment"}),
    _reinforce("reinforce:probe_alignment+mlp32", env_kwargs={"reward": "probe_alignment"}, hidden_sizes=(32,)),
    GridEntry(label="mtkd_rl:probe_alignment", agent="mtkd_rl", env_id=WEIGHT_ENV, env_kwargs={"reward": "probe_alignment"}),
    # The same with the probe drawn from the training split's labelled rows: no label beyond the budget.
    _reinforce("reinforce:probe_alignment+labelled_probe", env_kwargs={"reward": "probe_alignment", "probe_source": "labelled"}),
    _reinforce("reinforce:probe_alignment+mlp32+labelled_probe", env_kwargs={"reward": "probe_alignment", "probe_source": "labelled"},
               hidden_sizes=(32,)),
    _reinforce("reinforce:lr0.01", learning_rate=0.01),
    _reinforce("reinforce:no_stages", stages=0),
    _reinforce("reinforce:stages3", stages=3),
    _reinforce("reinforce:hard_label_fallback", env_kwargs={"empty_selection": "hard_label"}),
    # The observation: what the policy sees of each (instance, teacher) pair.
    _reinforce("reinforce:features=teacher", env_kwargs={"features": list(TEACHER_GROUPS)}),
    _reinforce("reinforce:features=paper", env_kwargs={"features": ["semantic", "teacher_probs", "teacher_ce"]}),
    _reinforce("reinforce:features=static", env_kwargs={"features": list(STATIC_GROUPS)}),
)
PRESETS["levers"] = Preset(
    name="levers", tasks=("twitter-sentiment",), seeds=(0, 1, 2, 3, 4), epochs=10,
    common_env_kwargs={**LEARNING_ENV, **FINE_TUNED, "student": "head"}, entries=LEVER_ENTRIES, single_teachers=False,
)

# The full preset's student on one task with the agents that matter for the claim: a run that fits in
# under an hour on the 2-core machine (the full preset takes hours there).
PRESETS["transformer"] = Preset(
    name="transformer", tasks=("twitter-sentiment",), seeds=(0, 1, 2, 3, 4), epochs=3,
    common_env_kwargs=dict(PRESETS["full"].common_env_kwargs),
    entries=(NO_KD, AVG_KD, BEST_TEACHER, REINFORCE,
             _reinforce("reinforce:student_loss", env_kwargs={"reward": "student_loss"}), PPO,
             _reinforce("reinforce:no_stages", stages=0), CORRECT_TEACHERS),
    single_teachers=False,
)

# Headroom: regimes where per-instance selection can (or cannot) matter on real text. Each regime is a
# teacher pool (kd_env.teachers.pools) with the ``bow`` student: trainable word-piece embeddings that share no
# backbone with any teacher, so distillation has a capacity gap to fill.
# The pools are head-tuned, so the whole grid (teachers included) fits in about an hour on 2 cores.
HEADROOM_POOLS = ("biased-specialists", "specialists", "mixed-quality")
HEADROOM_REGIMES = {f"twitter/{pool}": {"task": "twitter-sentiment", "teachers": pool} for pool in HEADROOM_POOLS}
HEADROOM_ENTRIES = (
    NO_KD, AVG_KD, BEST_TEACHER, CORRECT_TEACHERS, CA_MKD,
    MTKD_RL, REINFORCE,
    REINFORCE_PAPER,
    PPO, PPO_INSTANCE,
)
PRESETS["headroom"] = Preset(
    name="headroom", tasks=tuple(HEADROOM_REGIMES), seeds=(0, 1, 2, 3, 4), epochs=10,
    common_env_kwargs={**LEARNING_ENV, "student": "bow"}, entries=HEADROOM_ENTRIES, regimes=HEADROOM_REGIMES,
)

# The README's main job: the regime where selection matters, small enough to run from a fresh clone in
# minutes (head-tuned teachers, bow student, the baselines, the privileged reference and REINFORCE).
PRESETS["demo"] = Preset(
    name="demo", tasks=("twitter/biased-specialists",), seeds=(0, 1, 2), epochs=10,
    common_env_kwargs=dict(PRESETS["headroom"].common_env_kwargs),
    entries=(NO_KD, AVG_KD, BEST_TEACHER, CORRECT_TEACHERS, REINFORCE),
    regimes={"twitter/biased-specialists": HEADROOM_REGIMES["twitter/biased-specialists"]}, single_teachers=False,
)
