"""TensorRT's build progress (``trt.IProgressMonitor``, TensorRT >= 10.0) shown as rich progress bars.

TensorRT calls ``phase_start(phase_name, parent_phase, num_steps)`` (parent None for a top-level phase),
``step_complete(phase_name, step)`` and ``phase_finish(phase_name)`` from the builder thread; phases nest (a
parent's bar stays while its children run). Returning False from ``step_complete`` cancels the build, which is
how Ctrl-C stops a long build cleanly. A display problem must never break a build, so callbacks swallow errors.
"""

from __future__ import annotations

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn


def make_progress_monitor(trt, progress: Progress):
    """A ``trt.IProgressMonitor`` that drives ``progress`` (one task per running phase, indented by depth)."""

    class RichProgressMonitor(trt.IProgressMonitor):
        def __init__(self):
            trt.IProgressMonitor.__init__(self)  # pybind11 trampolines need the base initialised
            self.tasks: dict[str, tuple[int, int]] = {}  # phase → (task id, depth)
            self.cancelled = False

        def phase_start(self, phase_name, parent_phase, num_steps):
            try:
                depth = self.tasks[parent_phase][1] + 1 if parent_phase in self.tasks else 0
                task = progress.add_task("  " * depth + str(phase_name), total=max(int(num_steps), 1))
                self.tasks[phase_name] = (task, depth)
            except Exception:  # noqa: BLE001 - the bar is cosmetic; the build goes on
                pass

        def step_complete(self, phase_name, step):
            try:
                if phase_name in self.tasks:
                    progress.update(self.tasks[phase_name][0], completed=int(step) + 1)
            except Exception:  # noqa: BLE001
                pass
            return not self.cancelled

        def phase_finish(self, phase_name):
            try:
                task = self.tasks.pop(phase_name, None)
                if task is not None:
                    progress.remove_task(task[0])
            except Exception:  # noqa: BLE001
                pass

    return RichProgressMonitor()


def build_progress(console=None) -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    console=console, transient=True)
