"""Side-by-side benchmark: the seed recipe (faithful) against this project's recipes.

    python benchmarks/run_benchmark.py --data-dir ../shared/data/emnist-proxy

Each recipe trains in its own child process (one process tree, one run), records test
accuracy after every epoch outside its training clock, and reports its final test figures
and peak memory. Writes results.md, results.json and time_vs_accuracy.png to --out.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
RECIPES: dict[str, dict] = {
    "seed": {"label": "seed recipe (faithful)"},
    "ours_seed": {"label": "ours: experiment=seed_recipe", "overrides": ["experiment=seed_recipe"]},
    "ours_default": {"label": "ours: default (python train.py)", "overrides": []},
    "ours_fast": {"label": "ours: experiment=fast", "overrides": ["experiment=fast"]},
    "ours_best": {"label": "ours: experiment=best", "overrides": ["experiment=best"]},
}
# The targets this benchmark checks (issue 10), each against the faithful seed recipe.
FAST_TIME_FRACTION = 1 / 20  # experiment=fast reaches the seed's final accuracy in 1/20 its time
BEST_ACCURACY, BEST_SECONDS = 0.90, 20 * 60  # experiment=best: 90% within 20 minutes
SEED_RECIPE_SPEEDUP = 5.0  # experiment=seed_recipe: 5x the seed's training images/s


def _peak_rss_mb() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    workers = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return (own + workers) / 1024  # ru_maxrss is in KiB on Linux


def _macro_figures(
    predictions: torch.Tensor, targets: torch.Tensor, num_classes: int
) -> dict[str, float]:
    from torchmetrics.functional.classification import (
        multiclass_accuracy,
        multiclass_f1_score,
        multiclass_precision,
    )

    return {
        "acc": float(multiclass_accuracy(predictions, targets, num_classes, average="micro")),
        "f1": float(multiclass_f1_score(predictions, targets, num_classes, average="macro")),
        "precision": float(
            multiclass_precision(predictions, targets, num_classes, average="macro")
        ),
    }


def run_seed(args: argparse.Namespace) -> dict:
    sys.path.insert(0, str(Path(__file__).parent))
    import seed_recipe

    device = torch.device(args.device)
    curve: list[dict] = []
    last: dict = {}

    def on_epoch_end(epoch, seconds, model, test_loader) -> None:
        predictions, targets = seed_recipe.predict(model, test_loader, device)
        last.update(_macro_figures(predictions, targets, 47))
        curve.append({"epoch": epoch + 1, "train_seconds": seconds, "test_acc": last["acc"]})
        print(f"seed epoch {epoch + 1}: {seconds:.0f}s test acc {last['acc']:.4f}", flush=True)

    seconds, images = seed_recipe.train(args.data_dir, args.seed_epochs, device, on_epoch_end)
    return {"train_seconds": seconds, "images_seen": images, "curve": curve, "final": last}


def run_ours(args: argparse.Namespace, overrides: list[str]) -> dict:
    import lightning as L
    from hydra import compose, initialize_config_dir
    from omegaconf import open_dict

    from emnist_lightning.training.run import train

    class TestCurve(L.Callback):
        """Times training epochs (validation excluded) and tests after each one."""

        def __init__(self) -> None:
            self.seconds, self.curve, self._start, self.images = 0.0, [], None, 0

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
            self.images += len(batch[1])

        def on_train_epoch_start(self, trainer, pl_module) -> None:
            self._start = time.perf_counter()

        def on_validation_start(self, trainer, pl_module) -> None:
            if trainer.sanity_checking or self._start is None:
                return
            self.seconds += time.perf_counter() - self._start
            self._start = None
            images, labels = trainer.datamodule.test_set()
            was_training = pl_module.training
            pl_module.eval()
            with torch.inference_mode():
                predictions = torch.cat(
                    [
                        pl_module(chunk.to(pl_module.device).float().div(255)).argmax(1).cpu()
                        for chunk in images.split(2048)
                    ]
                )
            pl_module.train(was_training)
            acc = float((predictions == labels).float().mean())
            self.curve.append(
                {"epoch": trainer.current_epoch + 1, "train_seconds": self.seconds, "test_acc": acc}
            )
            print(
                f"epoch {trainer.current_epoch + 1}: {self.seconds:.0f}s test acc {acc:.4f}",
                flush=True,
            )

    accelerator = "gpu" if args.device.startswith("cuda") else "cpu"
    extra = [f"trainer.max_epochs={args.ours_epochs}"] if args.ours_epochs else []
    extra += args.overrides
    with initialize_config_dir(version_base="1.3", config_dir=str(REPO / "conf")):
        cfg = compose(
            "train",
            overrides=[
                *overrides,
                *extra,
                f"data.data_dir={args.data_dir}",
                "data.download=false",
                f"trainer.accelerator={accelerator}",
                "trainer.devices=1",
                "trainer.enable_progress_bar=false",
                "++callbacks.progress_bar=null",
                "logger=none",
            ],
        )
    run_dir = Path(args.out) / "runs" / args.child
    # A fresh folder per benchmark run: an earlier run's best checkpoint must not linger there.
    shutil.rmtree(run_dir, ignore_errors=True)
    with open_dict(cfg):
        cfg.paths.output_dir = str(run_dir)
        cfg.paths.log_dir = str(Path(args.out) / "runs")
    curve = TestCurve()
    metrics = train(cfg, extra_callbacks=[curve])
    final = {
        "acc": metrics["test/acc"],
        "f1": metrics["test/f1"],
        "precision": metrics["test/precision"],
    }
    return {
        "train_seconds": curve.seconds,
        "images_seen": curve.images,
        "curve": curve.curve,
        "final": final,
    }


def time_to_reach(curve: list[dict], target: float) -> float | None:
    """Training seconds at the first epoch whose test accuracy reaches `target`."""
    return next((point["train_seconds"] for point in curve if point["test_acc"] >= target), None)


def child_main(args: argparse.Namespace) -> None:
    recipe = RECIPES[args.child]
    result = run_seed(args) if args.child == "seed" else run_ours(args, recipe["overrides"])
    result.update(recipe=args.child, label=recipe["label"], peak_rss_mb=_peak_rss_mb())
    Path(args.out, f"{args.child}.json").write_text(json.dumps(result, indent=2))


def _fmt_seconds(value: float | None) -> str:
    return "not reached" if value is None else f"{value:,.0f} s"


def report(results: list[dict], out: Path, command: str) -> str:
    seed = next((r for r in results if r["recipe"] == "seed"), None)
    target = seed["final"]["acc"] if seed else None
    lines = [
        f"Command: `{command}`",
        "",
        "| recipe | epochs | training time | train images/s | time to seed's final test acc | test acc | macro F1 | macro precision | peak RSS |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in results:
        reach = time_to_reach(r["curve"], target) if target is not None else None
        lines.append(
            f"| {r['label']} | {len(r['curve'])} | {r['train_seconds']:,.0f} s | "
            f"{r['images_seen'] / r['train_seconds']:,.0f} | {_fmt_seconds(reach)} | "
            f"{100 * r['final']['acc']:.2f}% | {r['final']['f1']:.4f} | {r['final']['precision']:.4f} | "
            f"{r['peak_rss_mb']:,.0f} MB |"
        )
    if seed:
        lines.append("")
        seed_speed = seed["images_seen"] / seed["train_seconds"]
        for r in results:
            if r is seed:
                continue
            speed = r["images_seen"] / r["train_seconds"] / seed_speed
            reach = time_to_reach(r["curve"], target)
            ratio = (
                f"after {reach:,.0f} s, 1/{seed['train_seconds'] / reach:.1f} of the seed recipe's {seed['train_seconds']:,.0f} s"
                if reach
                else "not reached"
            )
            lines.append(
                f"- {r['label']}: {speed:.1f}x the seed recipe's training throughput; "
                f"reaches its final test accuracy ({100 * target:.2f}%): {ratio}"
            )
    lines += ["", *_targets(results, seed)]
    text = "\n".join(lines) + "\n"
    (out / "results.md").write_text(text)
    (out / "results.json").write_text(json.dumps(results, indent=2))
    _plot(results, target, out / "time_vs_accuracy.png")
    return text


def _targets(results: list[dict], seed: dict | None) -> list[str]:
    """Each target of the benchmark, stated as met or missed with the figures behind it."""
    by_name = {r["recipe"]: r for r in results}
    lines = []

    def verdict(met: bool) -> str:
        return "**met**" if met else "**missed**"

    if seed and "ours_fast" in by_name:
        reach = time_to_reach(by_name["ours_fast"]["curve"], seed["final"]["acc"])
        budget = seed["train_seconds"] * FAST_TIME_FRACTION
        shown = "never" if reach is None else f"after {reach:,.1f} s"
        lines.append(
            f"- Target experiment=fast reaches the seed recipe's final test accuracy within "
            f"1/20 of its training time ({budget:,.1f} s): {shown}: "
            f"{verdict(reach is not None and reach <= budget)}"
        )
    if "ours_best" in by_name:
        best = by_name["ours_best"]
        in_budget = [p for p in best["curve"] if p["train_seconds"] <= BEST_SECONDS]
        top = max((p["test_acc"] for p in in_budget), default=0.0)
        final_ok = best["train_seconds"] <= BEST_SECONDS and best["final"]["acc"] >= BEST_ACCURACY
        lines.append(
            f"- Target experiment=best reaches {100 * BEST_ACCURACY:.1f}% test accuracy within "
            f"{BEST_SECONDS // 60} minutes of training: final {100 * best['final']['acc']:.2f}% "
            f"after {best['train_seconds']:,.0f} s (best epoch within the budget "
            f"{100 * top:.2f}%): {verdict(final_ok)}"
        )
    if seed and "ours_seed" in by_name:
        ours = by_name["ours_seed"]
        ratio = (ours["images_seen"] / ours["train_seconds"]) / (
            seed["images_seen"] / seed["train_seconds"]
        )
        lines.append(
            f"- Target experiment=seed_recipe at {SEED_RECIPE_SPEEDUP:.0f}x the seed recipe's "
            f"training images/s: {ratio:.1f}x: {verdict(ratio >= SEED_RECIPE_SPEEDUP)}"
        )
    return lines


def _plot(results: list[dict], target: float | None, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 4.5))
    for r in results:
        xs = [p["train_seconds"] for p in r["curve"]]
        ys = [100 * p["test_acc"] for p in r["curve"]]
        axes.plot(xs, ys, marker="o", markersize=3, label=r["label"])
    if target is not None:
        axes.axhline(
            100 * target,
            color="grey",
            linestyle="--",
            linewidth=1,
            label="seed recipe's final accuracy",
        )
    axes.set_xscale("log")
    axes.set_xlabel("training time (s, log scale)")
    axes.set_ylabel("test accuracy (%)")
    axes.set_title("EMNIST-47 proxy: test accuracy against training time")
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--data-dir", default="../shared/data/emnist-proxy", help="folder holding EMNIST/raw"
    )
    parser.add_argument("--recipes", nargs="+", default=list(RECIPES), choices=list(RECIPES))
    parser.add_argument(
        "--seed-epochs", type=int, default=15, help="epochs of the faithful seed recipe"
    )
    parser.add_argument(
        "--ours-epochs",
        type=int,
        default=None,
        help="override every recipe of ours (default: each recipe's own)",
    )
    parser.add_argument(
        "--overrides",
        nargs="*",
        default=[],
        help="extra Hydra overrides for every recipe of ours (e.g. model.lr=0.004)",
    )
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--out", default="benchmarks/results", help="where results go")
    parser.add_argument(
        "--publish",
        default=None,
        help="also copy results.md, results.json and the plot here (e.g. docs/benchmarks)",
    )
    parser.add_argument("--child", choices=list(RECIPES), help=argparse.SUPPRESS)
    args = parser.parse_args()
    Path(args.out).mkdir(parents=True, exist_ok=True)
    if args.child:
        child_main(args)
        return
    results = []
    for recipe in args.recipes:
        command = [sys.executable, __file__, "--child", recipe, *sys.argv[1:]]
        print(f"== {RECIPES[recipe]['label']}", flush=True)
        subprocess.run(command, check=True)
        results.append(json.loads(Path(args.out, f"{recipe}.json").read_text()))
    print(
        report(
            results, Path(args.out), "python benchmarks/run_benchmark.py " + " ".join(sys.argv[1:])
        )
    )
    if args.publish:
        Path(args.publish).mkdir(parents=True, exist_ok=True)
        for name in ("results.md", "results.json", "time_vs_accuracy.png"):
            shutil.copyfile(Path(args.out) / name, Path(args.publish) / name)


if __name__ == "__main__":
    main()
