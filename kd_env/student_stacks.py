"""N independent students behind one interface, so the distillation core trains them as one computation.

A stack's ``forward`` takes a dict of (N, R, ...) inputs (row i for student i) and returns (N, R, C)
logits; its ``parameters()`` feed one optimizer. Training goes through ``forward_for_training``, which
also returns what ``backward(saved, logit_gradient)`` needs to put the gradients of the students'
parameters in their ``.grad``, given the loss's gradient with respect to the logits
(``kd_env.distill.kd_loss_and_logit_gradient``). AdamW is elementwise, so one AdamW over stacked
tensors is exactly N independent AdamWs while every student has taken the same number of steps (the
core keeps them in lockstep). Three kinds:

* ``HeadStack`` (``head``): the N MLPs' weights as (N, ...) tensors run with batched matmuls, and a
  backward written out (three batched matmuls), with no autograd graph: at these sizes autograd's
  bookkeeping costs more than the arithmetic.
* ``BagStack`` (``bow``): N embedding tables and MLPs as stacked tensors, one ``embedding_bag`` and
  two batched matmuls per forward, autograd for the backward. Only the rows of word pieces that occur
  in the training split are trained: with no weight decay, AdamW leaves every other row at its
  initial value (its gradient and moments stay 0), so keeping those rows frozen gives the same
  students while the optimizer walks a fraction of the table.
* ``LoopStack`` (any other student, e.g. ``transformer``): the documented fallback, a Python loop
  over N ordinary modules, one forward each, autograd; correct for every student, as slow as N envs.
  Hugging Face encoders read their inputs' values in Python (padding checks, trimming), which
  ``torch.func.vmap`` cannot trace.

Students start as ``kd_env.students.build_student`` builds them with each env's seed, so student i
of a stack starts exactly as the student of a single env with that seed.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from kd_env.students import BagStudent, HeadStudent, build_student


class MLPStack:
    """N two-layer MLPs (Linear -> ReLU -> Linear) as stacked tensors, ``nn.Sequential`` order."""

    def __init__(self, nets: list[nn.Sequential], requires_grad: bool) -> None:
        if any([type(m) for m in net] != [nn.Linear, nn.ReLU, nn.Linear] for net in nets):
            raise TypeError("MLPStack stacks Sequential(Linear, ReLU, Linear) modules")
        self.w1 = torch.stack([net[0].weight.detach() for net in nets])
        self.b1 = torch.stack([net[0].bias.detach() for net in nets]).unsqueeze(1)
        self.w2 = torch.stack([net[2].weight.detach() for net in nets])
        self.b2 = torch.stack([net[2].bias.detach() for net in nets]).unsqueeze(1)
        for tensor in self.parameters():
            tensor.requires_grad_(requires_grad)

    def parameters(self) -> list[torch.Tensor]:
        return [self.w1, self.b1, self.w2, self.b2]

    def views(self, i: int) -> list[tuple[torch.Tensor, tuple]]:
        return [(self.w1, (i,)), (self.b1, (i, 0)), (self.w2, (i,)), (self.b2, (i, 0))]

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(N, R, D) inputs -> (N, R, C) logits and the (N, R, H) hidden activations."""
        hidden = torch.baddbmm(self.b1, x, self.w1.transpose(1, 2)).relu_()
        return torch.baddbmm(self.b2, hidden, self.w2.transpose(1, 2)), hidden

    @torch.no_grad()
    def backward(self, x: torch.Tensor, hidden: torch.Tensor, logit_gradient: torch.Tensor) -> None:
        """Set the four tensors' ``.grad`` from the (N, R, C) gradient at the logits."""
        self.w2.grad = torch.bmm(logit_gradient.transpose(1, 2), hidden)
        self.b2.grad = logit_gradient.sum(dim=1, keepdim=True)
        hidden_gradient = torch.bmm(logit_gradient, self.w2).mul_(hidden > 0)
        self.w1.grad = torch.bmm(hidden_gradient.transpose(1, 2), x)
        self.b1.grad = hidden_gradient.sum(dim=1, keepdim=True)

    @torch.no_grad()
    def load(self, i: int, net: nn.Sequential) -> None:
        for (stacked, index), parameter in zip(self.views(i), net.parameters()):
            stacked[index] = parameter

    @torch.no_grad()
    def store(self, i: int, net: nn.Sequential) -> None:
        for (stacked, index), parameter in zip(self.views(i), net.parameters()):
            parameter.copy_(stacked[index])


class Stack:
    """What a stack does the same way as a student's modules unless it says otherwise."""

    def encode(self, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """A split's inputs as ``forward`` reads them (made once per split)."""
        return inputs

    def held_out_forward_for_training(self, inputs: dict[str, torch.Tensor]):
        """``forward_for_training`` on rows from outside the training split (the probe set)."""
        return self.forward_for_training(inputs)

    def module_moment(self, j: int, i: int, value: torch.Tensor) -> torch.Tensor:
        """Student i's optimizer moment of parameter j (its slice of the stacked moment) in the shape of
        the module's parameter j, a copy: what ``student_state`` saves."""
        return value.clone()

    def stack_moment(self, j: int, value: torch.Tensor) -> torch.Tensor:
        """The inverse of ``module_moment``: what the stack keeps of a saved moment of parameter j."""
        return value


class HeadStack(Stack):
    """N ``HeadStudent`` MLPs over standardised frozen sentence vectors."""

    cheap_forward = HeadStudent.cheap_forward

    def __init__(self, students: list[nn.Module]) -> None:
        if not all(isinstance(s, HeadStudent) for s in students):
            raise TypeError(f"HeadStack stacks HeadStudent modules, got {students[0]!r}")
        self._prototype = students[0]
        # Fresh students are drawn on the CPU, as build_student draws them before moving them.
        self._initialiser = copy.deepcopy(self._prototype).cpu()
        # Standardisation statistics come from the training split: the same for every student.
        self.mean, self.std = self._prototype.mean, self._prototype.std
        self.mlp = MLPStack([s.net for s in students], requires_grad=False)

    def parameters(self) -> list[torch.Tensor]:
        return self.mlp.parameters()

    @torch.no_grad()
    def reinitialise(self, seeds: list[int], build=None) -> None:
        """Fresh students in place, each drawn as ``build_student(name, data, seed)`` draws a head:
        the CPU generator seeded, then the two layers' own initialisation in construction order.
        Building N modules (``build``) per episode would cost more than the episode's steps at small
        N; the equivalence tests hold this to ``build_student``."""
        net = self._initialiser.net
        for i, seed in enumerate(seeds):
            with torch.random.fork_rng(devices=[]):
                torch.default_generator.manual_seed(seed)
                net[0].reset_parameters()
                net[2].reset_parameters()
            self.mlp.load(i, net)

    @torch.no_grad()
    def forward(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.forward_for_training(inputs)[0]

    @torch.no_grad()
    def forward_for_training(self, inputs: dict[str, torch.Tensor]) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """Logits, and the standardised inputs and hidden activations that ``backward`` needs."""
        x = (inputs["features"] - self.mean) / self.std
        logits, hidden = self.mlp.forward(x)
        return logits, (x, hidden)

    @staticmethod
    def second_half(saved: tuple[torch.Tensor, torch.Tensor], start: int) -> tuple[torch.Tensor, torch.Tensor]:
        """What ``backward`` needs of rows ``start:`` of a ``forward_for_training`` (views)."""
        return tuple(t[:, start:] for t in saved)

    def backward(self, saved: tuple[torch.Tensor, torch.Tensor], logit_gradient: torch.Tensor) -> None:
        self.mlp.backward(*saved, logit_gradient)

    def train(self, mode: bool = True) -> None:
        """Nothing to switch: the MLP has no dropout or normalisation layers."""

    def parameter_views(self, i: int) -> list[tuple[torch.Tensor, tuple]]:
        """Student i's parameters as (stacked tensor, index) pairs, in ``HeadStudent.parameters()`` order."""
        return self.mlp.views(i)

    def load_student(self, i: int, module: nn.Module) -> None:
        """Copy a ``HeadStudent``'s weights into slot i."""
        self.mlp.load(i, module.net)

    @torch.no_grad()
    def student(self, i: int) -> nn.Module:
        """Student i as an ordinary ``HeadStudent`` (a copy: training the stack does not change it)."""
        module = copy.deepcopy(self._prototype)
        self.mlp.store(i, module.net)
        return module


class AutogradStack(Stack):
    """Stacks whose backward is autograd's, from the graph ``forward_for_training`` keeps."""

    def forward_for_training(self, inputs: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits, and the same logits with their autograd graph for ``backward``."""
        with torch.enable_grad():
            logits = self.training_logits(inputs)
        return logits.detach(), logits

    @staticmethod
    def second_half(saved: torch.Tensor, start: int) -> torch.Tensor:
        return saved[:, start:]

    @staticmethod
    def backward(saved: torch.Tensor, logit_gradient: torch.Tensor) -> None:
        saved.backward(logit_gradient)


class BagStack(AutogradStack):
    """N ``BagStudent`` s: word-piece embedding tables and MLPs as stacked tensors.

    ``encode`` adds ``trained_ids`` to a split's inputs: each word piece's row in the trained part of
    the table, or -1 for pieces that never occur in the training split (their rows stay frozen).
    """

    cheap_forward = True

    def __init__(self, students: list[nn.Module], train_inputs: dict[str, torch.Tensor], weight_decay: float) -> None:
        if not all(isinstance(s, BagStudent) for s in students):
            raise TypeError(f"BagStack stacks BagStudent modules, got {students[0]!r}")
        self._prototype = students[0]
        vocabulary, device = students[0].embedding.num_embeddings, students[0].embedding.weight.device
        if weight_decay == 0.0:
            ids = train_inputs["input_ids"].to(device)
            self.trained_rows = torch.unique(ids[train_inputs["attention_mask"].to(device).bool()])
        else:  # weight decay moves every row: all are trained
            self.trained_rows = torch.arange(vocabulary, device=device)
        self._row_of = torch.full((vocabulary,), -1, dtype=torch.long, device=device)
        self._row_of[self.trained_rows] = torch.arange(len(self.trained_rows), device=device)
        tables = torch.stack([s.embedding.weight.detach() for s in students])
        self.frozen = tables.clone()
        self.embedding = tables[:, self.trained_rows].clone().requires_grad_(True)
        self.mlp = MLPStack([s.net for s in students], requires_grad=True)

    def parameters(self) -> list[torch.Tensor]:
        return [self.embedding, *self.mlp.parameters()]

    def encode(self, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {**inputs, "trained_ids": self._row_of[inputs["input_ids"]]}

    @torch.no_grad()
    def reinitialise(self, seeds: list[int], build) -> None:
        """Fresh students in place, from the modules ``build(seed)`` gives (``build_student``'s draws)."""
        for i, seed in enumerate(seeds):
            self.load_student(i, build(seed))

    def _pool(self, inputs: dict[str, torch.Tensor], include_frozen: bool) -> torch.Tensor:
        """(N, R, D) mean embeddings of each row's unmasked word pieces."""
        n, r, length = inputs["input_ids"].shape
        mask = inputs["attention_mask"].to(self.embedding.dtype)
        weights = mask / mask.sum(dim=-1, keepdim=True).clamp_min(1.0)
        trained_ids, dim = inputs["trained_ids"], self.embedding.shape[-1]
        offsets = torch.arange(n, device=trained_ids.device).view(n, 1, 1)
        trained = trained_ids >= 0
        pooled = F.embedding_bag(
            (trained_ids.clamp_min(0) + offsets * self.embedding.shape[1]).view(n * r, length),
            self.embedding.view(-1, dim), per_sample_weights=(weights * trained).view(n * r, length), mode="sum",
        )
        if include_frozen:
            pooled = pooled + F.embedding_bag(
                (inputs["input_ids"] + offsets * self.frozen.shape[1]).view(n * r, length),
                self.frozen.view(-1, dim), per_sample_weights=(weights * ~trained).view(n * r, length), mode="sum",
            )
        return pooled.view(n, r, dim)

    @torch.no_grad()
    def forward(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.mlp.forward(self._pool(inputs, include_frozen=True))[0]

    def training_logits(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        """Training rows hold only trained word pieces (masked positions aside): the frozen table is not read."""
        return self.mlp.forward(self._pool(inputs, include_frozen=False))[0]

    def held_out_forward_for_training(self, inputs: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Held-out rows may hold word pieces the training split lacks: their frozen rows are read too."""
        with torch.enable_grad():
            logits = self.mlp.forward(self._pool(inputs, include_frozen=True))[0]
        return logits.detach(), logits

    def train(self, mode: bool = True) -> None:
        """Nothing to switch: no dropout or normalisation layers."""

    def parameter_views(self, i: int) -> list[tuple[torch.Tensor, tuple]]:
        """Student i's parameters as (stacked tensor, index) pairs, in ``BagStudent.parameters()``
        order; the embedding's are its trained rows (``module_moment`` / ``stack_moment`` convert its moments)."""
        return [(self.embedding, (i,)), *self.mlp.views(i)]

    def _full_rows(self, trained: torch.Tensor, fill: torch.Tensor) -> torch.Tensor:
        """An embedding-shaped tensor: ``trained`` in the trained rows, ``fill`` in the others."""
        full = fill.clone()
        full[self.trained_rows] = trained
        return full

    def module_moment(self, j: int, i: int, value: torch.Tensor) -> torch.Tensor:
        """The embedding's moments are 0 in the frozen rows, as AdamW's over the whole table would be."""
        return self._full_rows(value, torch.zeros_like(self.frozen[i])) if j == 0 else value.clone()

    def stack_moment(self, j: int, value: torch.Tensor) -> torch.Tensor:
        return value[self.trained_rows] if j == 0 else value

    @torch.no_grad()
    def load_student(self, i: int, module: nn.Module) -> None:
        table = module.embedding.weight.to(self.frozen.device)
        self.frozen[i] = table
        self.embedding[i] = table[self.trained_rows]
        self.mlp.load(i, module.net)

    @torch.no_grad()
    def student(self, i: int) -> nn.Module:
        """Student i as an ordinary ``BagStudent`` (a copy)."""
        module = copy.deepcopy(self._prototype)
        module.embedding.weight.copy_(self._full_rows(self.embedding[i], self.frozen[i]))
        self.mlp.store(i, module.net)
        return module


class LoopStack(AutogradStack):
    """N ordinary student modules, run one after the other (the per-student fallback)."""

    def __init__(self, students: list[nn.Module]) -> None:
        self.students = students
        self.cheap_forward = all(getattr(s, "cheap_forward", False) for s in students)

    def parameters(self) -> list[torch.Tensor]:
        return [p for student in self.students for p in student.parameters()]

    @torch.no_grad()
    def reinitialise(self, seeds: list[int], build) -> None:
        for i, seed in enumerate(seeds):
            self.students[i].load_state_dict(build(seed).state_dict())

    def forward(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        return torch.stack(
            [student({name: t[i] for name, t in inputs.items()}).float() for i, student in enumerate(self.students)]
        )

    training_logits = forward

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
        if module is not self.students[i]:
            self.students[i].load_state_dict(module.state_dict())


STACKS = {
    "head": lambda modules, data, weight_decay: HeadStack(modules),
    "bow": lambda modules, data, weight_decay: BagStack(modules, data.splits["train"].student_inputs, weight_decay),
}
"""The students with a stacked implementation; any other runs in the ``LoopStack``."""


def build_stack(name: str, data, options: dict, seeds: list[int], device: torch.device, weight_decay: float):
    """The stack of N fresh students of kind ``name``, student i built with ``seeds[i]``."""
    modules = [build_student(name, data, seed, options).to(device) for seed in seeds]
    for module in modules:
        module.train()
    return STACKS[name](modules, data, weight_decay) if name in STACKS else LoopStack(modules)
