"""The classify suite: Tables 2-4 of the ESTN paper, classification error of STNs per interpolator.

A cell trains one network (:mod:`suites.models`, Table 3 with three EST layers, or
a timm backbone behind one) on a class-balanced labelled subset of a dataset
(:mod:`suites.datasets`) whose train and test images carry the paper's random
rotation / anisotropic scale / translation, and reports the test error of the
weights with the lowest validation error (150 held-out training images).

Cells: the CNN (interpolator :data:`CNN`, Table 2's network without EST layers) and
every interpolator of the run x label budget x seed, with
``params = {"dataset", "labels", "ablation", "backbone"}``. ``ablation`` is
``"none"`` for the main comparison (Table 2); when ``estn`` is in the run two more
variants of it are added (Table 4; not in the quick profile, see the option
``ablations``): ``"wo_norm"`` (plain instead of norm-preserving convolutions) and
``"wo_er"`` (``entropy=None`` in the cell's hparams: the sampler's weighted least
squares without the entropy regularizer).
As in the paper, only the ESTN network uses norm-preserving convolutions.

Profiles (training length in optimizer steps at batch 32, or the paper's epochs):

=========  ==============  ===========  ==========  =====================================  =====
profile    dataset         labels       image size  length                                 seeds
=========  ==============  ===========  ==========  =====================================  =====
quick      mnist5k         1000         16          128 steps (4 epochs), no Table 4       5
default    mnist5k         250, 1000,   32          2000 steps                             3
                           3000
full       fashion_mnist   1k, 3k, 5k   32          the paper's epochs (5k F-MNIST/MNIST,  3
                                                    8k SVHN, 12k CelebA)
=========  ==============  ===========  ==========  =====================================  =====

Every profile uses the paper's optimizer: Adam, learning rate 1e-3 decayed
linearly in stairs (5 stairs for 5k epochs, i.e. every 1k; every 2k epochs for
SVHN and CelebA), batch 32.

Options (``RunConfig.options``): ``dataset``, ``data_root``, ``download``,
``backbone`` (``"table3"`` or ``"timm:NAME"``), and, for experiments, ``labels``
(a list of budgets), ``steps`` or ``epochs`` (training length), ``perturbation``
(a factor on the paper's spreads, default 1; 0 turns the perturbations off) and
``ablations`` (plan Table 4's variants).

The report's Table 2 (:func:`table2`) puts the paper's numbers beside this run's, and
:func:`significance` says which differences the seeds can tell apart.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from suites import datasets as ds
from suites.base import Cell, Metric, Option, ReportData, RunConfig, Suite
from suites.models import ESTLayer, build_model
from suites.sections import Figure, Lines, Note, Section, Series, Table

#: the quick profile (see the module docstring and docs/suites/classify.md for why these)
QUICK_LABELS, QUICK_SEEDS, QUICK_STEPS, QUICK_IMAGE_SIZE = (1000,), 5, 128, 16
ABLATIONS = ("none", "wo_norm", "wo_er")
ABLATION_LABELS = {"none": "ESTN", "wo_norm": "ESTN w/o norm", "wo_er": "ESTN w/o ER"}
#: the ``interpolator`` of Table 2's "CNN" cells: the network without EST layers (no sampler)
CNN = "none"
#: Table 2's rows in order, cell interpolator -> row label; other interpolators follow, by name
TABLE2_ROWS = {
    CNN: "CNN (no EST layer)",
    "bilinear": "STN (bilinear)",
    "lstn": "L-STN (lstn)",
    "estn": "ESTN (estn)",
    "pyramid": "pyramid (anti-aliasing baseline)",
    "prefiltered": "prefiltered (anti-aliasing baseline)",
}
#: significance level of the pairwise tests (paired t over seeds, Benjamini-Hochberg adjusted per budget)
ALPHA = 0.05

#: labels per dataset for each profile (the paper: 1k/3k/5k on F-MNIST, 10k SVHN, 20k CelebA)
LABELS: dict[str, dict[str, tuple[int, ...]]] = {
    "quick": {"mnist5k": QUICK_LABELS, "digits": (250, 1000), "mnist": (1000,), "fashion_mnist": (1000,),
              "svhn": (10000,), "celeba": (20000,)},
    "default": {"mnist5k": (250, 1000, 3000), "digits": (250, 500, 1000), "mnist": (1000, 3000, 5000),
                "fashion_mnist": (1000, 3000, 5000), "svhn": (10000,), "celeba": (20000,)},
    "full": {"mnist5k": (1000, 3000), "digits": (250, 500, 1000), "mnist": (1000, 3000, 5000),
             "fashion_mnist": (1000, 3000, 5000), "svhn": (10000,), "celeba": (20000,)},
}
#: the paper's training length (epochs) and learning-rate stairs per dataset (Sec. 4.1, 4.2)
PAPER_EPOCHS = {"mnist5k": (5000, 5), "digits": (5000, 5), "mnist": (5000, 5), "fashion_mnist": (5000, 5),
                "svhn": (8000, 4), "celeba": (12000, 6)}

#: Table 2 of the paper, classification error (%) mean and std, keyed by the cell interpolator of each row
PAPER_TABLE2 = {
    "columns": ("F-MNIST 1k", "F-MNIST 3k", "F-MNIST 5k", "SVHN 10k", "CelebA 20k"),
    "rows": {
        CNN: ((14.47, 0.23), (12.63, 0.24), (9.52, 0.15), (16.45, 0.17), (22.24, 0.12)),
        "bilinear": ((11.84, 0.21), (9.37, 0.05), (6.76, 0.06), (14.97, 0.16), (18.82, 0.22)),
        "lstn": ((8.92, 0.12), (6.83, 1.24), (4.24, 1.08), (11.45, 0.14), (15.31, 0.21)),
        "estn": ((7.21, 0.06), (4.43, 0.8), (2.19, 0.16), (9.14, 0.24), (13.24, 0.16)),
    },
}
#: Table 4 of the paper (ablation), as printed; see the caveat in :func:`_paper_table4`
PAPER_TABLE4 = {
    "columns": ("MNIST", "F-MNIST", "SVHN"),
    "rows": {
        "ESTN": ((1.28, 0.01), (2.47, 0.00), (3.95, 0.01)),
        "ESTN w/o norm": ((1.20, 0.03), (2.38, 0.02), (3.84, 0.02)),
        "ESTN w/o ER": ((1.22, 0.02), (2.41, 0.01), (3.89, 0.00)),
    },
}

#: fixed seeds of the data perturbations (the same perturbed images for every cell)
TRAIN_PERTURBATION_SEED = 1001
TEST_PERTURBATION_SEED = 2002


@dataclasses.dataclass(frozen=True)
class Protocol:
    """How a cell trains: data, budgets, length and optimizer.

    ``steps`` (optimizer steps) or ``epochs`` fixes the length; with ``steps`` the
    number of epochs is ``ceil(steps / batches per epoch)``. The learning rate is
    ``lr * (1 - floor(epoch * lr_stairs / epochs) / lr_stairs)``.
    """

    dataset: str
    labels: tuple[int, ...]
    seeds: int
    image_size: int
    steps: int | None
    epochs: int | None
    lr_stairs: int
    batch_size: int = 32
    lr: float = 1e-3
    perturbation: float = 1.0
    #: whether ESTN's Table 4 variants (w/o norm, w/o ER) are cells too
    ablations: bool = True

    def num_epochs(self, budget: int) -> int:
        if self.epochs is not None:
            return self.epochs
        return max(1, math.ceil(self.steps / math.ceil(budget / self.batch_size)))

    def lr_factor(self, epoch: int, budget: int) -> float:
        total = self.num_epochs(budget)
        return 1.0 - math.floor(epoch * self.lr_stairs / total) / self.lr_stairs


def _positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name}: expected a positive integer, got {value!r}")
    return int(value)


def protocol_for(config: RunConfig) -> Protocol:
    """The :class:`Protocol` of ``config``'s profile and options; bad options raise ``ValueError``."""
    options = config.options_for(ClassifySuite.name)
    profile = config.profile
    if profile not in LABELS:
        raise ValueError(f"profile: expected one of {list(LABELS)}, got {profile!r}")
    dataset = options.get("dataset") or ("fashion_mnist" if profile == "full" else "mnist5k")
    if dataset not in ds.DATASETS:
        raise ValueError(f"dataset: expected one of {list(ds.DATASETS)}, got {dataset!r}")
    labels = options.get("labels") or LABELS[profile][dataset]
    if isinstance(labels, (int, str)):
        labels = [labels]
    labels = tuple(sorted({_positive_int("labels", int(v) if isinstance(v, str) and v.isdigit() else v)
                           for v in labels}))
    seeds = config.seeds if config.seeds is not None else (QUICK_SEEDS if profile == "quick" else 3)
    seeds = _positive_int("seeds", seeds)
    paper_epochs, stairs = PAPER_EPOCHS[dataset]
    steps: int | None = {"quick": QUICK_STEPS, "default": 2000}.get(profile)
    epochs: int | None = paper_epochs if profile == "full" else None
    if options.get("steps") is not None:
        steps, epochs = _positive_int("steps", options["steps"]), None
    if options.get("epochs") is not None:
        steps, epochs = None, _positive_int("epochs", options["epochs"])
    image_size = QUICK_IMAGE_SIZE if profile == "quick" else ds.IMAGE_SIZE
    strength = options.get("perturbation", 1.0)
    if isinstance(strength, bool) or not isinstance(strength, (int, float)) or not 0 <= strength <= 2:
        raise ValueError(f"perturbation: expected a strength in [0, 2] (1 = the paper's spreads), got {strength!r}")
    ablations = options.get("ablations", profile != "quick")
    if not isinstance(ablations, bool):
        raise ValueError(f"ablations: expected a bool (plan ESTN's Table 4 variants), got {ablations!r}")
    return Protocol(dataset, labels, seeds, image_size, steps, epochs, stairs, perturbation=float(strength),
                    ablations=ablations)


def _backbone(config: RunConfig) -> str:
    backbone = config.options_for(ClassifySuite.name).get("backbone") or "table3"
    if not isinstance(backbone, str) or not (backbone == "table3" or backbone.startswith("timm:")):
        raise ValueError(f"backbone: expected 'table3' or 'timm:NAME', got {backbone!r}")
    if backbone.startswith("timm:"):
        import timm

        if not timm.is_model(backbone[5:]):
            raise ValueError(f"backbone: {backbone[5:]!r} is not a timm model name (see timm.list_models())")
    return backbone


# --- data -----------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class PreparedData:
    """A dataset with its perturbations drawn: the test set warped once, the train pool's draws fixed."""

    data: ds.ImageDataset
    train_perturbations: ds.Perturbations
    test_inputs: Tensor  # (M, C, S, S) float in [-1, 1]


@functools.lru_cache(maxsize=2)
def prepare_data(name: str, root: str | None, download: bool, image_size: int, strength: float = 1.0) -> PreparedData:
    """Load ``name`` and draw its fixed perturbations, ``strength`` times the paper's spreads (cached per process)."""
    data = ds.load_dataset(name, root, download, image_size=image_size)
    train_p = ds.draw_perturbations(len(data.train_labels), TRAIN_PERTURBATION_SEED, strength)
    test_p = ds.draw_perturbations(len(data.test_labels), TEST_PERTURBATION_SEED, strength)
    return PreparedData(data, train_p, ds.to_model_input(ds.perturb(data.test_images, test_p)))


def _subset(p: ds.Perturbations, index: Tensor) -> ds.Perturbations:
    return ds.Perturbations(p.angle[index], p.scale[index], p.translation[index])


def training_tensors(prepared: PreparedData, budget: int, seed: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """``(x_train, y_train, x_val, y_val)``: the seed's balanced labelled subset and the validation split, perturbed."""
    data = prepared.data
    train_idx, val_idx = ds.labelled_split(data.train_labels, budget, data.num_classes, seed)

    def take(index: Tensor) -> tuple[Tensor, Tensor]:
        warped = ds.perturb(data.train_images[index], _subset(prepared.train_perturbations, index))
        return ds.to_model_input(warped), data.train_labels[index]

    return (*take(train_idx), *take(val_idx))


# --- training -------------------------------------------------------------------------------------


@torch.no_grad()
def error_rate(model: nn.Module, x: Tensor, y: Tensor, batch_size: int = 500) -> float:
    """Classification error (%) of ``model`` in eval mode on ``x (N, C, H, W)``, ``y (N,)``."""
    model.eval()
    wrong = 0
    for start in range(0, len(y), batch_size):
        logits = model(x[start : start + batch_size])
        wrong += int((logits.argmax(1) != y[start : start + batch_size]).sum())
    return 100.0 * wrong / max(1, len(y))


@torch.no_grad()
def est_displacement(model: nn.Module, x: Tensor) -> float:
    """Mean Frobenius norm of ``theta - identity`` of the model's EST layers on ``x`` (0 for an untrained STN)."""
    model.eval()
    layers = [m for m in model.modules() if isinstance(m, ESTLayer)]
    if not layers:
        return float("nan")
    model(x)
    eye = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    return float(torch.stack([(m.last_theta - eye).flatten(1).norm(dim=1).mean() for m in layers]).mean())


def train_step(model: nn.Module, optimizer: torch.optim.Optimizer, x: Tensor, y: Tensor) -> float:
    """One optimizer step on the cross-entropy of ``(x, y)``; returns the loss before the step."""
    model.train()
    loss = F.cross_entropy(model(x), y)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return float(loss.detach())


def _save_atomic(obj: Any, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def _clone_state(model: nn.Module) -> dict[str, Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def fit(
    model: nn.Module,
    protocol: Protocol,
    tensors: tuple[Tensor, Tensor, Tensor, Tensor],
    seed: int,
    checkpoint: Path | None = None,
    settings: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Train ``model`` by ``protocol``; checkpoint every epoch to ``checkpoint`` and resume from it.

    Returns the final state: ``best_state`` (weights with the lowest validation error,
    later epochs winning ties), ``best_val``, ``best_epoch``, ``history`` (per epoch:
    ``epoch``, ``train_loss``, ``val_error``), ``train_time_s``. A checkpoint whose
    ``settings`` differ from ``settings`` is ignored.
    """
    x_train, y_train, x_val, y_val = tensors
    budget = len(y_train)
    epochs = protocol.num_epochs(budget)
    optimizer = torch.optim.Adam(model.parameters(), lr=protocol.lr)
    state: dict[str, Any] = {"epoch": 0, "best_val": math.inf, "best_epoch": 0, "best_state": None,
                             "history": [], "train_time_s": 0.0, "done": False}
    if checkpoint is not None and checkpoint.is_file():
        saved = torch.load(checkpoint, map_location="cpu", weights_only=False)
        if saved.get("settings") == settings:
            model.load_state_dict(saved["model"])
            optimizer.load_state_dict(saved["optimizer"])
            torch.set_rng_state(saved["rng"])
            state = saved["state"]
            if not state["done"]:  # a stopped cell (Ctrl-C, a kill, a requeue) goes on from its last epoch
                print(f"classify: resuming {checkpoint.name} at epoch {state['epoch']} of {epochs}",
                      file=sys.stderr, flush=True)
    while state["epoch"] < epochs:
        epoch = state["epoch"]
        started = time.perf_counter()
        for group in optimizer.param_groups:
            group["lr"] = protocol.lr * protocol.lr_factor(epoch, budget)
        order = torch.randperm(budget, generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch))
        losses = []
        for start in range(0, budget, protocol.batch_size):
            batch = order[start : start + protocol.batch_size]
            losses.append(train_step(model, optimizer, x_train[batch], y_train[batch]))
        state["train_time_s"] += time.perf_counter() - started
        val = error_rate(model, x_val, y_val)
        state["history"].append({"epoch": epoch + 1, "train_loss": float(np.mean(losses)), "val_error": val})
        if val <= state["best_val"]:
            state.update(best_val=val, best_epoch=epoch + 1, best_state=_clone_state(model))
        state["epoch"] = epoch + 1
        state["done"] = state["epoch"] >= epochs
        if checkpoint is not None:
            _save_atomic({"settings": settings, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                          "rng": torch.get_rng_state(), "state": state}, checkpoint)
    return state


# --- the suite ------------------------------------------------------------------------------------


class ClassifySuite(Suite):
    """Classification error of Table 3's STNs per interpolator and label budget (Tables 2 and 4)."""

    name = "classify"
    summary = "test error of STN classifiers (Table 3 nets, EST layers) per interpolator and label budget"
    x_param = "labels"
    x_doc = "the number of labelled training images (a class-balanced subset, drawn per seed)."
    metrics = {
        "test_error": Metric("test error (perturbed test set)", "%", "lower"),
        "val_error": Metric("validation error (150 held-out training images)", "%", "lower"),
        "train_time_s": Metric("training time", "s", "lower", log=True),
        "best_epoch": Metric("epoch of the lowest validation error", "epoch"),
        "est_displacement": Metric("mean |theta - I| of the EST layers on test images"),
    }
    options = {
        "dataset": Option("str", "the dataset (as --dataset)", choices=tuple(ds.DATASETS)),
        "data_root": Option("str", "where datasets live (as --data-root)"),
        "download": Option("bool", "let torchvision download the dataset (as --download)"),
        "backbone": Option("str", "table3 or timm:NAME (as --backbone)"),
        "labels": Option("ints", "the label budgets", minimum=1),
        "steps": Option("int", "training length in optimizer steps", minimum=1, maximum=10_000_000),
        "epochs": Option("int", "training length in epochs (wins over steps)", minimum=1, maximum=100_000),
        "perturbation": Option("float", "a factor on the paper's perturbation spreads (0 turns them off)", minimum=0),
        "ablations": Option("bool", "plan ESTN's Table 4 variants (w/o norm, w/o ER); default: not at quick"),
    }

    def cells(self, config: RunConfig) -> list[Cell]:
        protocol = protocol_for(config)
        backbone = _backbone(config)
        if CNN in config.interpolators:
            raise ValueError(f"interpolators: {CNN!r} names the CNN cells (no EST layer) of this suite")
        out = []
        for budget in protocol.labels:
            variants = [(CNN, "none", {})]  # Table 2's CNN row, whatever the interpolators
            for name, hparams in config.interpolators.items():
                variants.append((name, "none", dict(hparams)))
                if name == "estn" and protocol.ablations:
                    variants += [(name, "wo_norm", dict(hparams)), (name, "wo_er", dict(hparams) | {"entropy": None})]
            for name, ablation, hp in variants:
                params = {"dataset": protocol.dataset, "labels": budget, "ablation": ablation, "backbone": backbone}
                out.extend(Cell(self.name, name, hp, params, seed) for seed in range(protocol.seeds))
        return out

    def run_cell(self, cell: Cell, config: RunConfig, run_dir: Path) -> list[dict[str, Any]]:
        protocol = protocol_for(config)
        params = cell.params
        ablation = params.get("ablation", "none")
        if ablation not in ABLATIONS:
            raise ValueError(f"ablation: expected one of {list(ABLATIONS)}, got {ablation!r}")
        if ablation != "none" and cell.interpolator != "estn":
            raise ValueError(f"ablation: {ablation!r} applies to estn only, got interpolator {cell.interpolator!r}")
        if ablation == "wo_er" and cell.hparams.get("entropy", "missing") is not None:
            raise ValueError("ablation: 'wo_er' needs hparams entropy=None")
        dataset, budget = params["dataset"], _positive_int("labels", params["labels"])
        backbone = params.get("backbone", "table3")
        protocol = dataclasses.replace(protocol, dataset=dataset)
        torch.manual_seed(cell.seed)
        options = config.options_for(self.name)
        root = options.get("data_root")
        prepared = prepare_data(dataset, None if root is None else str(root), bool(options.get("download", False)),
                                protocol.image_size, protocol.perturbation)
        tensors = training_tensors(prepared, budget, cell.seed)
        data = prepared.data
        norm_preserving = cell.interpolator == "estn" and ablation != "wo_norm"
        interpolator = None if cell.interpolator == CNN else cell.interpolator
        model = build_model(dataset, data.channels, data.num_classes, interpolator, cell.hparams,
                            norm_preserving=norm_preserving, backbone=backbone)
        settings = {"cell": cell.to_json(), "protocol": dataclasses.asdict(protocol)}
        checkpoint = Path(run_dir) / "checkpoints" / f"{cell.key}.pt"
        state = fit(model, protocol, tensors, cell.seed, checkpoint, settings)
        model.load_state_dict(state["best_state"])
        test_error = error_rate(model, prepared.test_inputs, data.test_labels)
        rows = [
            {"metric": "test_error", "value": test_error, "unit": "%"},
            {"metric": "val_error", "value": state["best_val"], "unit": "%"},
            {"metric": "train_time_s", "value": state["train_time_s"], "unit": "s"},
            {"metric": "best_epoch", "value": float(state["best_epoch"]), "unit": "epoch"},
        ]
        if interpolator is not None:  # the CNN has no EST layer to move
            displacement = est_displacement(model, prepared.test_inputs[:256])
            rows.append({"metric": "est_displacement", "value": displacement, "unit": "|theta - I|"})
        for h in state["history"]:
            rows.append({"metric": "train_loss_curve", "value": h["train_loss"], "unit": "nats", "epoch": h["epoch"]})
            rows.append({"metric": "val_error_curve", "value": h["val_error"], "unit": "%", "epoch": h["epoch"]})
        return rows

    def estimate_seconds(self, cell: Cell, config: RunConfig) -> float:
        """Seconds per cell on one CPU thread: about 0.03 s per optimizer step at batch 32 and 16 px (quick),
        4x that at 32 px, 3x for ESTN."""
        protocol = protocol_for(config)
        budget = int(cell.params["labels"])
        steps = protocol.num_epochs(budget) * math.ceil(budget / protocol.batch_size)
        per_step = 0.03 * (protocol.image_size / 16) ** 2 * (3.0 if cell.interpolator == "estn" else 1.0)
        return steps * per_step

    def report_sections(self, data: ReportData) -> list[Section]:
        results = data.results
        if results is None or results.empty or "suite" not in results:
            return []
        df = results[results["suite"] == self.name].copy()
        if df.empty:
            return []
        if "ablation" not in df:
            df["ablation"] = "none"
        df["ablation"] = df["ablation"].fillna("none")
        for column, default in (("dataset", "?"), ("backbone", "table3")):
            if column not in df:
                df[column] = default
            df[column] = df[column].fillna(default)
        df["labels"] = pd.to_numeric(df["labels"], errors="coerce").astype("Int64")
        df["value"] = pd.to_numeric(df["value"], errors="coerce")
        sections = []
        main = df[(df["ablation"] == "none") & (df["metric"] == "test_error")]
        if not main.empty:
            sections.append(Section("Classification error (%), Table 2 layout: this run beside the paper's numbers",
                                    _table2(main)))
            sections.append(Section("Which differences are significant (paired t-test over seeds)",
                                    _significance(significance(main))))
        else:
            sections.append(Section("Table 2 as published (the paper's numbers, not measured here)", _paper_table2()))
        abl = df[(df["interpolator"] == "estn") & (df["metric"] == "test_error")]
        if not abl.empty and (abl["ablation"] != "none").any():
            sections.append(Section("Ablation (%), Table 4 layout (this run)", _table4(abl)))
        sections.append(Section("Table 4 as published (the paper's numbers, not measured here)", _paper_table4()))
        curves = df[df["metric"].isin(["val_error_curve", "train_loss_curve"])]
        if not curves.empty and "epoch" in curves:
            sections.append(Section("Learning curves (this run)", _curves(curves)))
        return sections


# --- report helpers -------------------------------------------------------------------------------


def _mean_std(values: pd.Series) -> str:
    values = values.dropna()
    if values.empty:
        return "—"
    std = values.std(ddof=1) if len(values) > 1 else float("nan")
    return f"{values.mean():.2f} ± {std:.2f} (n={len(values)})" if len(values) > 1 else f"{values.mean():.2f} (n=1)"


def _variant(row: pd.Series) -> str:
    if row["interpolator"] == "estn" and row["ablation"] != "none":
        return f"estn ({ABLATION_LABELS[row['ablation']].removeprefix('ESTN ')})"
    return "cnn (no EST layer)" if row["interpolator"] == CNN else str(row["interpolator"])


def table2_order(methods: list[str]) -> list[str]:
    """``methods`` (cell interpolators) in Table 2's row order: :data:`TABLE2_ROWS` first, then by name."""
    known = [m for m in TABLE2_ROWS if m in methods]
    return known + sorted(m for m in methods if m not in TABLE2_ROWS)


def table2_label(method: str) -> str:
    return TABLE2_ROWS.get(method, method)


def table2(main: pd.DataFrame) -> pd.DataFrame:
    """Table 2's layout: one row per method (:func:`table2_order`), this run's columns beside the paper's.

    ``main`` holds the ``test_error`` rows of the main comparison (``ablation == "none"``).
    Columns are ``(source, column)`` pairs: ``("this run: DATASET, backbone B", "N labels")`` with
    "mean ± std (n=...)" over seeds, then ``("the paper (published, not measured here)", "F-MNIST 1k")``
    ... with the paper's "mean ± std" where the paper has the row, "—" where it has not.
    """
    methods = table2_order(sorted(main["interpolator"].unique()))
    columns = {}
    for (dataset, backbone), group in main.groupby(["dataset", "backbone"], sort=True):
        source = f"this run: {dataset}, backbone {backbone}"
        for budget, cells in group.groupby("labels", sort=True):
            by_method = cells.groupby("interpolator")["value"]
            columns[(source, f"{int(budget)} labels")] = [
                _mean_std(by_method.get_group(m)) if m in by_method.groups else "—" for m in methods]
    paper = "the paper (published, not measured here)"
    for i, column in enumerate(PAPER_TABLE2["columns"]):
        columns[(paper, column)] = [
            "{:.2f} ± {:.2f}".format(*PAPER_TABLE2["rows"][m][i]) if m in PAPER_TABLE2["rows"] else "—"
            for m in methods]
    frame = pd.DataFrame(columns, index=pd.Index([table2_label(m) for m in methods], name="model"))
    frame.columns = pd.MultiIndex.from_tuples(frame.columns)
    return frame


def significance(main: pd.DataFrame, alpha: float = ALPHA) -> pd.DataFrame:
    """Every pair of methods per dataset, backbone and budget: a paired t-test on the test errors over seeds.

    Cells of the same seed share the labelled subset, the validation set and the batch order
    (and, among STNs, the initialization), so the seed pairs them; the test is on the per-seed
    differences (:func:`scipy.stats.ttest_rel`, two-sided) over the seeds both methods have.
    Rows: ``dataset, backbone, labels, a, b`` (a before b in Table 2's order), ``mean_a, mean_b``
    and ``difference`` (a - b, percentage points) over those seeds, ``n`` (seeds), ``t``, ``p``,
    ``p_adjusted`` (Benjamini-Hochberg over the pairs of the same budget,
    :func:`scipy.stats.false_discovery_control`) and ``significant`` (``p_adjusted < alpha``).
    Pairs with fewer than two common seeds are left out.
    """
    from scipy import stats

    rows = []
    for (dataset, backbone, budget), group in main.groupby(["dataset", "backbone", "labels"], sort=True):
        by_seed = group.pivot_table(index="seed", columns="interpolator", values="value", aggfunc="mean")
        methods = table2_order(list(by_seed.columns))
        pairs = []
        for i, a in enumerate(methods):
            for b in methods[i + 1:]:
                both = by_seed[[a, b]].dropna()
                if len(both) < 2:
                    continue
                diff = both[a].to_numpy(float) - both[b].to_numpy(float)
                if np.ptp(diff) == 0:  # no spread: the t statistic is 0 or infinite
                    t, p = (0.0, 1.0) if diff[0] == 0 else (math.copysign(math.inf, diff[0]), 0.0)
                else:
                    t, p = stats.ttest_rel(both[a], both[b])
                pairs.append({"dataset": dataset, "backbone": backbone, "labels": int(budget), "a": a, "b": b,
                              "mean_a": both[a].mean(), "mean_b": both[b].mean(), "difference": diff.mean(),
                              "n": len(both), "t": float(t), "p": float(p)})
        if pairs:
            adjusted = stats.false_discovery_control([r["p"] for r in pairs])
            for r, q in zip(pairs, adjusted):
                rows.append(r | {"p_adjusted": float(q), "significant": bool(q < alpha)})
    columns = ["dataset", "backbone", "labels", "a", "b", "mean_a", "mean_b", "difference", "n", "t", "p",
               "p_adjusted", "significant"]
    return pd.DataFrame(rows, columns=columns)


def _table2(main: pd.DataFrame) -> tuple[Note, Table]:
    note = Note(
        "Test error (%) mean ± sample std over seeds (n shown). The right-hand columns are the published numbers "
        "of Shamsolmoali & Zareapoor, Entropy Transformer Networks, Table 2, shown for reference only: they were "
        "not produced by this harness, and the paper trained 5k epochs on Fashion-MNIST, SVHN and CelebA, so only "
        "the --full protocol on those data is comparable in level; shorter profiles show the ordering of methods. "
        "The paper's CNN has no EST layer (our CNN cells); the anti-aliasing baselines are not in the paper."
    )
    return note, Table(table2(main))


def _significance(tests: pd.DataFrame) -> tuple[Note | Table, ...]:
    items: list[Note | Table] = [Note(
        f"Per budget, every pair of methods: a paired t-test (two-sided) on the per-seed differences of their test "
        f"errors (cells of one seed share the labelled subset and the batch order), p-values adjusted by "
        f"Benjamini-Hochberg over the pairs of that budget; significant where the adjusted p is below {ALPHA}. "
        f"Not significant means the seeds cannot tell the two apart, not that they are equal."
    )]
    if tests.empty:
        return (*items, Note("No pair has at least two common seeds."))
    for (dataset, backbone, budget), group in tests.groupby(["dataset", "backbone", "labels"], sort=True):
        real = group[group["significant"]].sort_values("p_adjusted")
        found = "; ".join(
            f"{table2_label(r.a if r.difference < 0 else r.b)} below "
            f"{table2_label(r.b if r.difference < 0 else r.a)} by {abs(r.difference):.2f} points "
            f"(adjusted p = {r.p_adjusted:.3g})" for r in real.itertuples())
        items.append(Note(f"{dataset}, backbone {backbone}, {int(budget)} labels: {len(real)} of {len(group)} "
                          f"differences significant" + (f": {found}." if found else ".")))
    table = tests.assign(a=tests["a"].map(table2_label), b=tests["b"].map(table2_label))
    items.append(Table(table.round(4), caption="All pairs."))
    return tuple(items)


def _table4(abl: pd.DataFrame) -> tuple[Table]:
    abl = abl.assign(model=abl["ablation"].map(ABLATION_LABELS))
    table = abl.pivot_table(index="model", columns=["dataset", "labels"], values="value", aggfunc=_mean_std)
    table = table.reindex([ABLATION_LABELS[a] for a in ABLATIONS if ABLATION_LABELS[a] in table.index])
    table.columns = [f"{dataset}, {labels} labels" for dataset, labels in table.columns]
    return (Table(table, caption="Test error (%) mean ± std over seeds; columns: dataset, label budget."),)


def _paper_table(spec: dict[str, Any], label: Callable[[str], str] = str) -> Table:
    frame = pd.DataFrame(
        {col: [f"{m:.2f} ± {s:.2f}" for (m, s) in (cells[i] for cells in spec["rows"].values())]
         for i, col in enumerate(spec["columns"])},
        index=pd.Index([label(row) for row in spec["rows"]], name="model"),
    )
    return Table(frame)


def _paper_table2() -> tuple[Note, Table]:
    return (
        Note("Published numbers from Shamsolmoali & Zareapoor, Entropy Transformer Networks, Table 2 "
             "(classification error %, mean ± std), shown for reference only; they were not produced by this "
             "harness. The paper's rows map to ours as STN = bilinear, L-STN = lstn, ESTN = estn; the paper's CNN "
             "has no EST layer. The paper trained 5k epochs on Fashion-MNIST (the --full protocol); other profiles "
             "use other data and much shorter training, so their numbers are not comparable in level."),
        _paper_table(PAPER_TABLE2, table2_label),
    )


def _paper_table4() -> tuple[Note, Table]:
    return (
        Note("Published numbers from the paper's Table 4 (ablation), for reference only. Note: the paper's "
             "\"ESTN (ours)\" row of Table 4 (1.28, 2.47, 3.95) repeats its Table 1 row for ESTN, which reports "
             "marginal log-likelihoods, and the variants without norm-preservation or entropy regularizer come out "
             "lower; the paper does not state the metric, so these may not be error rates."),
        _paper_table(PAPER_TABLE4),
    )


def _curves(curves: pd.DataFrame) -> tuple[Figure]:
    curves = curves.assign(
        variant=curves.apply(_variant, axis=1),
        epoch=pd.to_numeric(curves["epoch"], errors="coerce"),
    )
    budgets = sorted(curves["labels"].dropna().unique())
    metrics = [("val_error_curve", "validation error (%)"), ("train_loss_curve", "train loss (nats)")]
    rows = []
    for metric, label in metrics:
        panels = []
        for budget in budgets:
            sub = curves[(curves["labels"] == budget) & (curves["metric"] == metric)]
            series = []
            for variant, group in sub.groupby("variant", sort=True):
                stats = group.groupby("epoch")["value"].agg(["mean", "std"]).fillna({"std": 0.0})
                key = variant if variant in set(curves["interpolator"]) else None
                series.append(Series(variant, stats.index.to_numpy(), stats["mean"].to_numpy(),
                                     (stats["mean"] - stats["std"]).to_numpy(), (stats["mean"] + stats["std"]).to_numpy(),
                                     key=key))
            panels.append(Lines(tuple(series), xlabel="epoch", ylabel=label, title=f"{int(budget)} labels"))
        rows.append(tuple(panels))
    return (Figure(panels=tuple(rows), panel_size=(4.2, 3.4), legend=True, alt="learning curves",
                   caption="Mean over seeds with a ±1 std band, per epoch; the validation set is 150 held-out "
                   "training images."),)
