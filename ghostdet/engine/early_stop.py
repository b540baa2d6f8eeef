"""``patience=N``: stop a run when the val mAP50-95 has not improved for N evaluations (ultralytics' EarlyStopping)."""
from __future__ import annotations


class EarlyStopping:
    """``step(fitness)`` after each evaluation; True when the run should stop. ``patience`` <= 0: never.

    The count is of *evaluations* (with ``eval_interval=5`` a patience of 10 is 50 epochs). Its state travels in
    ``last.pt`` (:meth:`state_dict`), so a resumed run counts on from where it stopped."""

    def __init__(self, patience: int = 100):
        self.patience = int(patience or 0)
        self.best_fitness: float | None = None
        self.bad_evaluations = 0  # evaluations since the best one

    def step(self, fitness: float) -> bool:
        if self.best_fitness is None or fitness > self.best_fitness:
            self.best_fitness, self.bad_evaluations = float(fitness), 0
        else:
            self.bad_evaluations += 1
        return self.patience > 0 and self.bad_evaluations >= self.patience

    def reason(self, best_epoch) -> str:
        """The one line that says why the run stopped."""
        return (f"early stop: val mAP50-95 has not improved for {self.bad_evaluations} evaluations (patience="
                f"{self.patience}; best {self.best_fitness:.4f} at epoch {best_epoch}); best.pt holds that epoch")

    def state_dict(self) -> dict:
        return {"best_fitness": self.best_fitness, "bad_evaluations": self.bad_evaluations}

    def load_state_dict(self, d: dict | None) -> None:
        d = d or {}
        self.best_fitness = d.get("best_fitness")
        self.bad_evaluations = int(d.get("bad_evaluations", 0))


__all__ = ["EarlyStopping"]
