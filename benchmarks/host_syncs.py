"""Host syncs per training step, counted without a GPU.

On a GPU every ``.item()``, ``bool(tensor)``, ``float(tensor)``, ``int(tensor)`` or ``.tolist()``
waits for the device to finish its queue. This script counts those calls with a
``TorchFunctionMode`` (which sees every tensor method call, on any device) during the steps of
three training recipes of the book, and prints the count per step: the moons (chapter 3), the
moons with label dropout (chapter 8) and the 8x8 digits with the class-conditional U-Net
(chapter 8). The steps are counted between two calls of ``fit``'s callback, so what ``fit``
does once (argument checks, moving the data) is not part of a step.

    python benchmarks/host_syncs.py
"""

from __future__ import annotations

import collections

import torch
from torch.overrides import TorchFunctionMode

from fmbook import data, models, train

SYNCING = {"item", "tolist", "__bool__", "__float__", "__int__", "__index__", "numpy", "_is_nonzero"}


class SyncCounter(TorchFunctionMode):
    """Counts the tensor calls that copy a value to the host (each one a device sync on a GPU)."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: collections.Counter[str] = collections.Counter()

    def __torch_function__(self, func, types, args=(), kwargs=None):  # noqa: ANN001, ANN204
        name = getattr(func, "__name__", "")
        if name in SYNCING:
            self.calls[name] += 1
        return func(*args, **(kwargs or {}))


def syncs_per_step(run, steps: int = 6) -> tuple[float, dict[str, int]]:
    """Run ``run(callback)`` for ``steps`` steps; the syncs between the first and the last callback."""
    marks: list[collections.Counter[str]] = []
    with SyncCounter() as counter:

        def callback(step: int, loss: float, model: torch.nn.Module) -> None:
            marks.append(collections.Counter(counter.calls))

        run(callback, steps)
    between = marks[-1] - marks[0]
    return sum(between.values()) / (len(marks) - 1), dict(between)


def moons(callback, steps: int) -> None:
    x1 = data.sample_moons(512, generator=0)
    model = models.MLPVelocityField(dim=2, width=64)
    train.train_flow_matching(model, x1, steps=steps, batch_size=128, progress=False, callback=callback)


def moons_conditional(callback, steps: int) -> None:
    x1, labels = data.sample_moons_with_labels(512, generator=0)
    model = models.ConditionalMLPVelocityField(dim=2, num_classes=2, width=64)
    train.train_conditional_flow_matching(
        model, x1, labels, p_uncond=0.1, steps=steps, batch_size=128, progress=False, callback=callback
    )


def digits(callback, steps: int) -> None:
    split = data.load_digits_split()
    model = models.UNet(in_channels=1, channels=16, num_classes=10)
    train.train_conditional_flow_matching(
        model, split.train_images, split.train_labels, p_uncond=0.1, steps=steps, batch_size=64,
        progress=False, callback=callback,
    )


def main() -> None:
    torch.manual_seed(0)
    print(f"{'recipe':<22} {'syncs per step':>15}  calls")
    for name, run in (("moons", moons), ("moons, label dropout", moons_conditional), ("digits U-Net", digits)):
        per_step, calls = syncs_per_step(run)
        print(f"{name:<22} {per_step:>15.1f}  {calls}")


if __name__ == "__main__":
    main()
