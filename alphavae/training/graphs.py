"""The whole training step recorded as a CUDA graph and replayed: the GPU runs the step without the CPU.

At the embedded size the RGBA step is launch-bound (benchmarks/NOTES.md, "The training step": about 40 ms of
kernels per 80 ms step at batch 8, the rest is Python launching a few thousand small kernels). A CUDA graph
records the kernels of one step once; each later step is one ``replay``.

What the graph holds: the blend augmentation, the generator loss and its backward, the AdamW update, and from
``disc_start`` the discriminator's loss, backward and update — everything :func:`update` of the trainer runs.
What stays outside, every step: copying the batch and the step's random draws into the graph's fixed input
tensors (so the numbers are exactly the eager step's), the learning-rate schedules (they fill the capturable
optimisers' rate tensors: :mod:`alphavae.training.optim`), EMA (its decay changes per step) and the divergence
watch. A step whose work differs (before and after ``disc_start``) is a separate graph; the first one, with its
memory pool, is freed at the first step of the second phase, before that phase's eager warm-up steps.

Each graph is recorded after ``warmup`` eager steps of its phase, run on one side stream as CUDA graphs require
(cuDNN chooses its algorithms, AdamW creates its state, torch.compile compiles, small constants are cached);
those steps are ordinary training steps. Recording itself runs nothing, so the recorded step is then replayed.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

#: Only the recording thread may not make unsafe CUDA calls during a capture ("global", PyTorch's default, also
#: forbids them to other threads: the DataLoader's pin-memory thread allocating page-locked memory invalidated
#: the trainer's first capture on an H100, which surfaced as a cuDNN internal error; benchmarks/NOTES.md "Stop 22").
CAPTURE_ERROR_MODE = "thread_local"

#: Eager steps of a phase before it is recorded (PyTorch's CUDA-graph notes warm up with 3).
WARMUP = 3

Update = Callable[[torch.Tensor, tuple[torch.Tensor, torch.Tensor], torch.Tensor | None, torch.Tensor | None, bool],
                  dict[str, torch.Tensor]]


class StepGraphs:
    """``step(batch, choices, noise, latent_noise, adversarial) → logs`` that runs ``update`` through CUDA graphs.

    ``update`` must have fixed shapes and no host synchronisation; it reads only its arguments and the networks'
    and optimisers' own tensors. The returned logs are the graph's output tensors: read them (or copy them)
    before the next step overwrites them. ``record=False`` runs the same fixed-input path without recording
    (what a CPU can test).
    """

    def __init__(self, update: Update, record: bool = True, warmup: int = WARMUP):
        self.update, self.record, self.warmup = update, record, warmup
        self.inputs: list[torch.Tensor] | None = None
        self.present: tuple[bool, bool] = (False, False)  # which of noise, latent_noise the fixed inputs hold
        self.eager_steps = {False: 0, True: 0}
        self.graph: tuple[bool, torch.cuda.CUDAGraph, dict[str, torch.Tensor]] | None = None
        self.side: torch.cuda.Stream | None = None  # the warm-up steps' stream (one: its cached memory is reused)

    def __call__(self, batch: torch.Tensor, choices: tuple[torch.Tensor, torch.Tensor], noise: torch.Tensor | None,
                 latent_noise: torch.Tensor | None, adversarial: bool) -> dict[str, torch.Tensor]:
        optional = (noise, latent_noise)
        present = tuple(t is not None for t in optional)
        given = [batch, *choices, *(t for t in optional if t is not None)]
        if self.inputs is None:
            self.inputs, self.present = [t.clone() for t in given], present
        if present != self.present:
            raise ValueError(f"the step's optional inputs (noise, latent_noise) changed from {self.present} to {present}")
        for fixed, value in zip(self.inputs, given, strict=True):
            fixed.copy_(value, non_blocking=True)
        batch, chosen, picks, *rest = self.inputs
        fixed_optional = iter(rest)
        noise, latent_noise = (next(fixed_optional) if t is not None else None for t in optional)
        args = (batch, (chosen, picks), noise, latent_noise, adversarial)
        if self.graph is not None:
            if self.graph[0] == adversarial:
                self.graph[1].replay()
                return self.graph[2]
            self.graph = None  # a new phase: free the previous one's graph and its memory before its warm-up
        if not self.record or self.eager_steps[adversarial] < self.warmup:
            self.eager_steps[adversarial] += 1
            return self._on_side_stream(lambda: self.update(*args))
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, capture_error_mode=CAPTURE_ERROR_MODE):
            logs = self.update(*args)
        self.graph = (adversarial, graph, logs)
        graph.replay()
        return logs

    def _on_side_stream(self, run: Callable[[], dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        if not self.record:
            return run()
        self.side = self.side or torch.cuda.Stream()
        main = torch.cuda.current_stream()
        self.side.wait_stream(main)
        with torch.cuda.stream(self.side):
            logs = run()
        main.wait_stream(self.side)
        return logs
