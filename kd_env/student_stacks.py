"""N independent students behind one interface, so a vector env trains them as one computation.

A stack's ``forward`` takes a dict of (N, R, ...) inputs (row i for student i) and returns (N, R, C)
logits; its parameters feed one optimizer. Training goes through ``forward_for_training``, which also
returns what ``backward(saved, logit_gradient)`` needs to put the gradients of the students'
parameters in their ``.grad``, given the loss's gradient with respect to the logits
(``kd_env.distill.kd_loss_and_logit_gradient``). Two kinds:

* ``HeadStack`` (the ``head`` student): the N MLPs' weights are stacked into (N, ...) tensors and run
  with batched matmuls (``baddbmm``), so the forward and backward cost a handful of kernel calls
  whatever N is. Its backward is written out (two layers: three batched matmuls), with no autograd
  graph: autograd's bookkeeping costs more than the arithmetic at these sizes. AdamW is elementwise,
  so one AdamW over the stacked tensors is exactly N independent
  AdamWs while every student has taken the same number of steps (the vector env keeps them in
  lockstep).
* ``LoopStack`` (any other student): a Python loop over N ordinary modules, one forward each; the
  optimizer still covers all of them in one ``step``. The per-env fallback: correct for every
  student, as slow as N single envs.

Students are built by ``kd_env.students.build_student`` with each env's seed, so student i starts
exactly as a single env's student would.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from kd_env.students import HeadStudent

STACKABLE_STUDENTS = ("head",)


class HeadStack:
    """N ``HeadStudent`` MLPs (Linear -> ReLU -> Linear) as stacked tensors."""

    cheap_forward = HeadStudent.cheap_forward

    def __init__(self, students: list[nn.Module]) -> None:
        for student in students:
            if not isinstance(student, HeadStudent) or [type(m) for m in student.net] != [nn.Linear, nn.ReLU, nn.Linear]:
                raise TypeError(f"HeadStack stacks HeadStudent(Linear, ReLU, Linear) modules, got {student!r}")
        self._prototype = students[0]
        # Fresh students are drawn on the CPU, as build_student draws them before moving them.
        self._initialiser = copy.deepcopy(self._prototype).cpu()
        # Standardisation statistics come from the training split: the same for every student.
        self.mean, self.std = self._prototype.mean, self._prototype.std
        first = [s.net[0] for s in students]
        second = [s.net[2] for s in students]
        self.w1 = torch.stack([m.weight.detach() for m in first])
        self.b1 = torch.stack([m.bias.detach() for m in first]).unsqueeze(1)
        self.w2 = torch.stack([m.weight.detach() for m in second])
        self.b2 = torch.stack([m.bias.detach() for m in second]).unsqueeze(1)

    def parameters(self) -> list[torch.Tensor]:
        return [self.w1, self.b1, self.w2, self.b2]

    @torch.no_grad()
    def reinitialise(self, seeds: list[int]) -> None:
        """Fresh students in place, each drawn as ``build_student(name, data, seed)`` draws a head:
        the CPU generator seeded, then the two layers' own initialisation in construction order.
        Building N modules per episode would cost more than the episode's steps at small N; the
        equivalence tests hold this to ``build_student``."""
        layers = (self._initialiser.net[0], self._initialiser.net[2])
        for i, seed in enumerate(seeds):
            with torch.random.fork_rng(devices=[]):
                torch.default_generator.manual_seed(seed)
                for layer in layers:
                    layer.reset_parameters()
            self.w1[i], self.b1[i, 0] = layers[0].weight, layers[0].bias
            self.w2[i], self.b2[i, 0] = layers[1].weight, layers[1].bias

    @torch.no_grad()
    def forward(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.forward_for_training(inputs)[0]

    @torch.no_grad()
    def forward_for_training(self, inputs: dict[str, torch.Tensor]) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """Logits, and the standardised inputs and hidden activations that ``backward`` needs."""
        x = (inputs["features"] - self.mean) / self.std
        hidden = torch.baddbmm(self.b1, x, self.w1.transpose(1, 2)).relu_()
        return torch.baddbmm(self.b2, hidden, self.w2.transpose(1, 2)), (x, hidden)

    @staticmethod
    def second_half(saved: tuple[torch.Tensor, torch.Tensor], start: int) -> tuple[torch.Tensor, torch.Tensor]:
        """What ``backward`` needs of rows ``start:`` of a ``forward_for_training`` (views)."""
        return tuple(t[:, start:] for t in saved)

    @torch.no_grad()
    def backward(self, saved: tuple[torch.Tensor, torch.Tensor], logit_gradient: torch.Tensor) -> None:
        """Set every parameter's ``.grad`` from the (N, R, C) gradient of the loss at the logits."""
        x, hidden = saved
        self.w2.grad = torch.bmm(logit_gradient.transpose(1, 2), hidden)
        self.b2.grad = logit_gradient.sum(dim=1, keepdim=True)
        hidden_gradient = torch.bmm(logit_gradient, self.w2).mul_(hidden > 0)
        self.w1.grad = torch.bmm(hidden_gradient.transpose(1, 2), x)
        self.b1.grad = hidden_gradient.sum(dim=1, keepdim=True)

    def train(self, mode: bool = True) -> None:
        """Nothing to switch: the MLP has no dropout or normalisation layers."""

    def parameter_views(self, i: int) -> list[tuple[torch.Tensor, tuple]]:
        """Student i's parameters as (stacked tensor, index) pairs, in ``HeadStudent.parameters()`` order."""
        return [(self.w1, (i,)), (self.b1, (i, 0)), (self.w2, (i,)), (self.b2, (i, 0))]

    @torch.no_grad()
    def load_student(self, i: int, module: nn.Module) -> None:
        """Copy a ``HeadStudent``'s weights into slot i."""
        for (stacked, index), parameter in zip(self.parameter_views(i), module.parameters()):
            stacked[index] = parameter

    @torch.no_grad()
    def student(self, i: int) -> nn.Module:
        """Student i as an ordinary ``HeadStudent`` (a copy: training the stack does not change it)."""
        module = copy.deepcopy(self._prototype)
        module.net[0].weight.copy_(self.w1[i])
        module.net[0].bias.copy_(self.b1[i, 0])
        module.net[2].weight.copy_(self.w2[i])
        module.net[2].bias.copy_(self.b2[i, 0])
        return module


class LoopStack:
    """N ordinary student modules, run one after the other (the per-env fallback)."""

    def __init__(self, students: list[nn.Module]) -> None:
        self.students = students
        self.cheap_forward = all(getattr(s, "cheap_forward", False) for s in students)

    def parameters(self) -> list[torch.Tensor]:
        return [p for student in self.students for p in student.parameters()]

    def forward(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        return torch.stack(
            [student({name: t[i] for name, t in inputs.items()}).float() for i, student in enumerate(self.students)]
        )

    def forward_for_training(self, inputs: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits, and the same logits with their autograd graph for ``backward``."""
        logits = self.forward(inputs)
        return logits.detach(), logits

    @staticmethod
    def second_half(saved: torch.Tensor, start: int) -> torch.Tensor:
        return saved[:, start:]

    @staticmethod
    def backward(saved: torch.Tensor, logit_gradient: torch.Tensor) -> None:
        saved.backward(logit_gradient)

    def train(self, mode: bool = True) -> None:
        for student in self.students:
            student.train(mode)

    def student(self, i: int) -> nn.Module:
        """Student i itself (not a copy)."""
        return self.students[i]

    def parameter_views(self, i: int) -> list[tuple[torch.Tensor, tuple]]:
        """Student i's parameters as (tensor, index) pairs: its own tensors, whole."""
        return [(parameter, ()) for parameter in self.students[i].parameters()]

    def load_student(self, i: int, module: nn.Module) -> None:
        """Nothing to copy: ``student(i)`` is the live module, loaded in place."""


def require_stackable(name: str, per_env_fallback: bool) -> None:
    """Raise unless the student is batched natively or the per-env loop was asked for."""
    if name not in STACKABLE_STUDENTS and not per_env_fallback:
        raise ValueError(
            f"the {name!r} student has no batched implementation (batched: {list(STACKABLE_STUDENTS)}); "
            "pass per_env_fallback=True to step its sub-envs one after the other"
        )


def stack_students(name: str, students: list[nn.Module], per_env_fallback: bool) -> HeadStack | LoopStack:
    """The batched stack for a stackable student; else the per-env loop, if it was asked for."""
    require_stackable(name, per_env_fallback)
    return HeadStack(students) if name in STACKABLE_STUDENTS else LoopStack(students)
