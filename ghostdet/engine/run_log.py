"""What a run writes besides checkpoints: results.csv, PNG plots (losses.png, mAP.png), TensorBoard events."""
from __future__ import annotations

import csv
import io
import logging
import math
import time
from pathlib import Path

from ghostdet.utils.atomic import atomic_write, write_text

log = logging.getLogger(__name__)

LOSS_KEYS = ("box", "cls", "dfl")
METRIC_KEYS = ("mAP50", "mAP50-95", "mAP75", "precision", "recall", "F1")  # P/R/F1 at val.pr_conf
CSV_COLUMNS = ("epoch", "box_loss", "cls_loss", "dfl_loss", "lr", *METRIC_KEYS, "epoch_time_s")


def _fmt(v) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    return f"{v:.6g}" if isinstance(v, float) else str(v)


class RunLogger:
    """Rank-0 writer of per-epoch results. ``log_epoch`` adds one CSV row (mAP cells are empty on epochs
    without evaluation; the file is rewritten atomically) and the TensorBoard scalars, and refreshes the plots every ``plot_every`` epochs;
    ``close`` draws them for the last epoch (drawing both figures costs ~0.3 s: 2 % of a small-data CPU epoch).

    On resume the CSV is cut back to the epochs the checkpoint has, so a run interrupted after writing
    its CSV row but before its checkpoint never shows an epoch twice.
    """

    def __init__(self, run_dir: str | Path, resume_epoch: int | None = None, tensorboard: bool = True, plots: bool = True,
                 plot_every: int = 10, extra_plots=None):
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.csv_path = self.run_dir / "results.csv"
        self.plots = plots
        self.plot_every = max(int(plot_every), 1)
        self.extra_plots = extra_plots  # called at each plot refresh (the validator's curves and confusion matrices)
        self._plotted_rows = 0
        self.rows: list[dict] = []
        self._owns_csv = resume_epoch is not None  # a fresh run never replaces a results.csv it did not write
        if resume_epoch is not None and self.csv_path.is_file():
            with open(self.csv_path, newline="") as f:
                self.rows = [r for r in csv.DictReader(f) if r.get("epoch") and int(r["epoch"]) <= resume_epoch]
        self._rewrite_csv()
        self.tb = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:  # tensorboard is optional
                log.debug("tensorboard not installed; no event files")
            else:
                self.tb = SummaryWriter(log_dir=str(self.run_dir))

    def _rewrite_csv(self) -> None:
        """The whole file, published atomically (a crash leaves the previous epoch's rows, never half a file)."""
        text = io.StringIO(newline="")
        writer = csv.DictWriter(text, fieldnames=CSV_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(self.rows)
        write_text(self.csv_path, text.getvalue(), overwrite=self._owns_csv)
        self._owns_csv = True  # this run's own file from now on

    def log_epoch(self, epoch: int, losses: dict, lr: float, metrics: dict | None, epoch_time_s: float) -> None:
        """``epoch`` is 1-based (the number of finished epochs)."""
        metrics = metrics or {}
        row = {"epoch": str(epoch), "lr": _fmt(float(lr)), "epoch_time_s": _fmt(float(epoch_time_s))}
        for k in LOSS_KEYS:
            row[f"{k}_loss"] = _fmt(float(losses[k])) if k in losses else ""
        for k in METRIC_KEYS:
            row[k] = _fmt(float(metrics[k])) if metrics.get(k) is not None else ""
        self.rows.append(row)
        self._rewrite_csv()
        if self.tb is not None:
            for k in LOSS_KEYS:
                if k in losses:
                    self.tb.add_scalar(f"train/{k}_loss", float(losses[k]), epoch)
            self.tb.add_scalar("lr", float(lr), epoch)
            for k in METRIC_KEYS:
                if metrics.get(k) is not None:
                    self.tb.add_scalar(f"val/{k}", float(metrics[k]), epoch)
            self.tb.flush()
        if self.plots and epoch % self.plot_every == 0:
            self.plot()

    def plot(self) -> None:
        """``losses.png`` (training losses per epoch) and ``mAP.png`` (validation mAP per evaluated epoch), and the
        ``extra_plots``."""
        self._plotted_rows = len(self.rows)
        if self.extra_plots is not None:
            self.extra_plots()
        if not self.rows:
            return
        import matplotlib

        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt
        from matplotlib.ticker import MaxNLocator

        epochs = [int(r["epoch"]) for r in self.rows]

        def series(key):
            pts = [(e, float(r[key])) for e, r in zip(epochs, self.rows) if r.get(key) not in (None, "")]
            return [p[0] for p in pts], [p[1] for p in pts]

        fig, axes = plt.subplots(1, len(LOSS_KEYS), figsize=(4 * len(LOSS_KEYS), 3), squeeze=False)
        for ax, k in zip(axes[0], LOSS_KEYS):
            x, y = series(f"{k}_loss")
            ax.plot(x, y, marker=".")
            ax.set_title(f"train {k} loss")
            ax.set_xlabel("epoch")
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.grid(alpha=0.3)
        fig.tight_layout()
        _save_figure(fig, self.run_dir / "losses.png")

        fig, ax = plt.subplots(figsize=(5, 3.5))
        for k in ("mAP50", "mAP50-95"):
            x, y = series(k)
            ax.plot(x, y, marker="o", label=k)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel("COCO mAP (val)")
        ax.set_ylim(0, 1)
        ax.grid(alpha=0.3)
        ax.legend()
        fig.tight_layout()
        _save_figure(fig, self.run_dir / "mAP.png")

    def close(self) -> None:
        if self.plots and self._plotted_rows != len(self.rows):
            self.plot()
        if self.tb is not None:
            self.tb.close()


def _save_figure(fig, path: Path) -> None:
    import matplotlib.pyplot as plt

    with atomic_write(path, "wb") as f:
        fig.savefig(f, format="png", dpi=100)
    plt.close(fig)


def summary_table(epochs: int, seconds: float, best: dict, last: dict, run_dir: str | Path) -> str:
    """The end-of-training table: time, best and final mAP, where the weights and results are."""
    from ghostdet.utils.tables import text_table

    run_dir = Path(run_dir)
    rows = [("epochs", f"{epochs}"), ("time", f"{seconds / 60:.1f} min")]
    if best:
        rows += [("best epoch", str(best.get("epoch"))), ("mAP50", f"{best['mAP50']:.4f}"),
                 ("mAP50-95", f"{best['mAP50-95']:.4f}")]
    if last:
        rows += [("final mAP50", f"{last['mAP50']:.4f}"), ("final mAP50-95", f"{last['mAP50-95']:.4f}")]
    rows += [("best.pt", str(run_dir / "weights" / "best.pt")), ("last.pt", str(run_dir / "weights" / "last.pt")),
             ("results", str(run_dir / "results.csv"))]
    return text_table(None, rows, align="ll", rule=True)


def progress_bar(loader, desc: str, enabled: bool = True):
    """``(bar, iterable)``: a tqdm bar over ``loader`` when ``enabled``, else ``(None, loader)``."""
    if not enabled:
        return None, loader
    from tqdm import tqdm

    bar = tqdm(loader, total=len(loader), desc=desc, leave=True, dynamic_ncols=True, bar_format="{l_bar}{bar:20}{r_bar}")
    return bar, bar


def progress_text(mean_losses, lr: float, images: int, t_start: float) -> str:
    """The bar's postfix: the epoch's mean losses so far, the LR and the images per second since ``t_start``."""
    return (" ".join(f"{k} {v:.3f}" for k, v in zip(LOSS_KEYS, mean_losses.tolist())) + f" lr {lr:.2e}"
            + f" {images / max(time.time() - t_start, 1e-9):.1f} img/s")
