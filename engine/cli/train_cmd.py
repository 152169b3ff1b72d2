"""``vcfscreen train``: train the segmenter and the classifier on phantoms, export, write the card."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import numpy as np
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from engine.cli.config_cmd import load_settings
from engine.logs import setup_logging

log = logging.getLogger(__name__)
console = Console(stderr=True)
HELD_OUT_OFFSET = 500_000
"""Validation seeds start here: disjoint from any training seed range used in practice."""


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[note]}"),
        TimeElapsedColumn(), TimeRemainingColumn(), console=console,
    )


def _previous(out: Path) -> dict:
    path = out / "training.json"
    return json.loads(path.read_text()) if path.exists() else {}


def lineage(init: Path, previous: dict | None) -> str:
    """What a continued segmenter was trained on before, as one readable chain."""
    if not previous:
        return f"{init.name} (its recipe was not recorded beside it)"
    before = previous.get("continued_from", "random initialisation")
    return (f"{before}; then {previous.get('steps', '?')} steps, {previous.get('minutes', '?')} min, "
            f"on {previous.get('data', 'data not recorded')}")


def register(app: typer.Typer) -> None:
    register_levels(app)

    @app.command("train")
    def train(
        what: str = typer.Option("all", help="all, segmenter or classifier."),
        studies: int = typer.Option(48, min=2, help="Training phantom studies."),
        validation: int = typer.Option(6, min=1, help="Held-out phantom studies for the card's metrics."),
        seed: int = typer.Option(1000, help="First training seed; the run is reproducible by seed."),
        seg_steps: int = typer.Option(1200, min=1, help="Segmenter optimiser steps."),
        cls_steps: int = typer.Option(1500, min=1, help="Classifier optimiser steps."),
        cls_ordinal: float = typer.Option(0.0, min=0.0, help="Weight of the classifier's ordinal grade term (0: off)."),
        cls_tilt: float = typer.Option(
            0.0, min=0.0, max=60.0, help="Largest random sagittal tilt of the classifier's crops, degrees (0: upright)."),
        depth: int = typer.Option(18, help="Classifier ResNet depth: 18, 34 or 50."),
        matrix: int = typer.Option(192, min=64, help="Phantom matrix for training (192 ~ 2 mm pixels, fast)."),
        full_studies: int = typer.Option(12, min=0, help="Extra clinical-size (512 matrix) phantoms, ~25 s each."),
        cls_upper: int = typer.Option(
            0, min=0, help="Extra phantoms with a fracture planted at T1..T5, for the classifier only; ~2 s each."),
        seg_patch: int = typer.Option(80, min=16, help="Segmenter training patch edge (a multiple of 16)."),
        seg_lr: float = typer.Option(3e-3, min=1e-6, help="Segmenter peak learning rate."),
        seg_edge: float = typer.Option(
            0.25, min=0.0, max=1.0, help="Share of segmenter patches on the spine where the volume ends (top or bottom)."),
        seg_fracture: float = typer.Option(
            0.0, min=0.0, max=1.0,
            help="Share of segmenter patches centred on a vertebra of grade 2 or 3 (on any spine voxel in a "
                 "study without one)."),
        seg_adjacent: int = typer.Option(
            0, min=0, help="Extra phantoms with two adjacent vertebrae fractured, for the segmenter only; ~2 s each."),
        seg_init: Path = typer.Option(None, help="Continue from this exported segmenter (ONNX) instead of random weights."),
        version: str = typer.Option("1", help="Weights version written into the models."),
        out: Path = typer.Option(None, help="Output folder (default: models.dir from the settings)."),
        cache: Path = typer.Option(Path(".cache/vcfscreen-training"), help="Sample cache folder."),
    ) -> None:
        """Train the models on synthetic phantoms and export them to ONNX with a model card."""
        import torch

        from engine.models.card import describe_model_file, write_model_card
        from engine.models.export import export_classifier, export_segmenter
        from engine.models.networks import ClassifierConfig, SegmenterConfig, count_parameters
        from engine.models.training.classifier import ClsTrainConfig, train_classifier
        from engine.models.training.data import build_samples
        from engine.models.training.evaluation import classifier_metrics, segmenter_metrics
        from engine.models.training.segmenter import SegTrainConfig, train_segmenter
        from engine.phantom import PhantomConfig
        from engine.phantom.training import adjacent_fractures, training_example, upper_thoracic_fracture
        from engine.preprocess import Preprocessor

        if what not in ("all", "segmenter", "classifier"):
            raise typer.BadParameter(f"--what {what!r} must be all, segmenter or classifier")
        settings = load_settings()
        # Every option is checked before any phantom is made: data generation can take most of
        # an hour, and a refused option after it would throw that away.
        try:  # the message names what is wrong: --depth, or the settings' models.crop_size
            cls_config = ClassifierConfig(depth=depth, crop_size=settings.models.crop_size)
        except ValueError as exc:
            raise typer.BadParameter(str(exc)) from None
        seg_config = SegmenterConfig()
        seg_cfg = None
        if what != "classifier":  # the segmenter's options are checked only when it is trained
            if seg_patch % seg_config.grid_multiple:
                raise typer.BadParameter(f"--seg-patch {seg_patch} must be a multiple of {seg_config.grid_multiple}")
            try:
                seg_cfg = SegTrainConfig(steps=seg_steps, seed=seed, patch=(seg_patch,) * 3, lr=seg_lr,
                                         edge_focus=seg_edge, fracture_focus=seg_fracture)
            except ValueError as exc:  # the config's own check (--seg-edge + --seg-fracture over 1)
                raise typer.BadParameter(f"--seg-edge {seg_edge} and --seg-fracture {seg_fracture}: {exc}") from None
            if seg_init is not None and not seg_init.is_file():
                raise typer.BadParameter(f"--seg-init {seg_init} is not a file")
        cls_cfg = ClsTrainConfig(steps=cls_steps, seed=seed, ordinal_weight=cls_ordinal, tilt_degrees=cls_tilt)
        setup_logging(settings.logging)
        out = out or settings.models.dir
        out.mkdir(parents=True, exist_ok=True)
        before = _previous(out)  # what the last training into this folder recorded
        torch.set_num_threads(max(1, torch.get_num_threads()))
        # More fractured studies than the clinical mix, so the rare class is seen often enough.
        phantom = PhantomConfig.fast(matrix=matrix, fracture_study_probability=0.7)
        clinical = PhantomConfig(fracture_study_probability=0.7)
        preprocessor = Preprocessor(settings.preprocess)
        key = (phantom.model_dump_json(), settings.preprocess.model_dump_json())
        key_full = (clinical.model_dump_json(), settings.preprocess.model_dump_json())
        full_seeds = range(seed + 200_000, seed + 200_000 + full_studies)
        # Extra phantoms with planted fractures, each kind for one model only (none when that
        # model is not trained): their own seed range and cache key.
        upper_seeds = range(seed + 300_000, seed + 300_000 + (cls_upper if what != "segmenter" else 0))
        adjacent_seeds = range(seed + 400_000, seed + 400_000 + (seg_adjacent if what != "classifier" else 0))

        def planted(seeds: range, label: str, plant, advance) -> list:
            key_planted = (f"{label}|" + phantom.model_dump_json(), settings.preprocess.model_dump_json())
            return build_samples(seeds, lambda s: training_example(s, plant(s, phantom)), preprocessor, cache,
                                 key_planted, progress=advance)

        started = time.monotonic()

        with _progress() as progress:
            task = progress.add_task("phantoms", total=studies + full_studies + validation + len(upper_seeds) + len(adjacent_seeds), note="")
            classifier_only = planted(upper_seeds, "upper-thoracic fracture", upper_thoracic_fracture,
                                      lambda n: progress.advance(task, n))
            segmenter_only = planted(adjacent_seeds, "adjacent fractures", adjacent_fractures,
                                     lambda n: progress.advance(task, n))
            train_samples = build_samples(
                range(seed, seed + studies), lambda s: training_example(s, phantom), preprocessor, cache, key,
                progress=lambda n: progress.advance(task, n),
            )
            train_samples += build_samples(
                full_seeds, lambda s: training_example(s, clinical), preprocessor, cache, key_full,
                progress=lambda n: progress.advance(task, n),
            )
            held_out = build_samples(
                range(seed + HELD_OUT_OFFSET, seed + HELD_OUT_OFFSET + validation),
                lambda s: training_example(s, phantom), preprocessor, cache, key,
                progress=lambda n: progress.advance(task, n),
            )
        data_s = time.monotonic() - started
        spacing, window = settings.preprocess.spacing_mm, settings.preprocess.hu_window
        models, metrics, recipe = [], {}, {}

        if what in ("all", "segmenter"):
            cfg = seg_cfg  # built above whenever the segmenter is trained
            t0 = time.monotonic()
            with _progress() as progress:
                task = progress.add_task("segmenter", total=cfg.steps, note="")
                net, losses = train_segmenter(
                    train_samples + segmenter_only, seg_config, cfg, on_step=lambda i, loss: progress.update(task, advance=1, note=f"loss {loss:.3f}"),
                    init_from=seg_init,
                )
            seg_s = time.monotonic() - t0
            report = export_segmenter(net, seg_config, out / settings.models.segmentation_file, version=version,
                                      spacing_mm=spacing, hu_window=window, tolerance=1e-3)
            metrics["segmentation (held-out phantoms)"] = segmenter_metrics(net, held_out, seg_config.out_channels)
            previous = before.get("training", {}).get("recipe", {}).get("segmenter") if seg_init else None
            recipe["segmenter"] = {"continued_from": lineage(seg_init, previous) if seg_init else "random initialisation",
                                   "steps": cfg.steps, "batch": cfg.batch, "patch": list(cfg.patch), "lr": cfg.lr,
                                   "patches": f"{cfg.edge_focus:.0%} on the spine at the volume's ends, "
                                              + (f"up to {cfg.fracture_focus:.0%} on a grade 2-3 vertebra, "
                                                 if cfg.fracture_focus else "")
                                              + f"{cfg.elsewhere_on_spine:.0%} elsewhere on the spine",
                                   "loss": "Dice + cross-entropy (MONAI DiceCELoss)", "optimiser": "AdamW, one-cycle",
                                   "final_loss": round(float(np.mean(losses[-50:])), 4), "minutes": round(seg_s / 60, 1)}
            models.append({**describe_model_file(report.path), "name": "vertebra_seg", "parameters": count_parameters(net),
                           "architecture": "MONAI UNet 3-D", "config": {"channels": list(seg_config.channels)}})
        if what in ("all", "classifier"):
            cfg = cls_cfg
            t0 = time.monotonic()
            with _progress() as progress:
                task = progress.add_task("classifier", total=cfg.steps, note="")
                net, losses = train_classifier(
                    train_samples + classifier_only, cls_config, cfg, on_step=lambda i, loss: progress.update(task, advance=1, note=f"loss {loss:.3f}")
                )
            cls_s = time.monotonic() - t0
            report = export_classifier(net, cls_config, out / settings.models.classifier_file, version=version,
                                       spacing_mm=spacing, hu_window=window, tolerance=1e-3)
            metrics["classification (held-out phantoms, true centroids)"] = classifier_metrics(net, held_out, cls_config.crop_size)
            loss_name = "BCE (fracture) + cross-entropy (grade)" + (
                f" + {cfg.ordinal_weight:g} x squared expected-grade error" if cfg.ordinal_weight else "")
            recipe["classifier"] = {"steps": cfg.steps, "batch": cfg.batch, "lr": cfg.lr, "jitter_voxels": cfg.jitter_voxels,
                                    "tilt_degrees": cfg.tilt_degrees,
                                    "loss": loss_name, "optimiser": "AdamW, one-cycle",
                                    "final_loss": round(float(np.mean(losses[-50:])), 4), "minutes": round(cls_s / 60, 1)}
            models.append({**describe_model_file(report.path), "name": "vertebra_cls", "parameters": count_parameters(net),
                           "architecture": f"MONAI ResNet-{depth} 3-D, two heads",
                           "config": {"depth": depth, "widths": list(cls_config.widths), "crop_size": cls_config.crop_size}})

        data = {"phantom_studies": studies, "seeds": f"{seed}..{seed + studies - 1}",
                "clinical_size_studies": full_studies,
                "clinical_size_seeds": f"{full_seeds.start}..{full_seeds.stop - 1}" if full_studies else "-",
                "held_out_seeds": f"{seed + HELD_OUT_OFFSET}..{seed + HELD_OUT_OFFSET + validation - 1}",
                "phantom_matrix": matrix, "generation_minutes": round(data_s / 60, 1)}
        for entry in recipe.values():  # each model records the data it was trained on
            entry["data"] = f"{studies} phantoms (seeds {data['seeds']}) + {full_studies} clinical-size" + (
                f" (seeds {data['clinical_size_seeds']})" if full_studies else "")
        for name, seeds, what_planted in (("segmenter", adjacent_seeds, "two adjacent vertebrae fractured"),
                                          ("classifier", upper_seeds, "a fracture planted at T1..T5")):
            if name in recipe and seeds:
                recipe[name]["data"] += f" + {len(seeds)} with {what_planted} (seeds {seeds.start}..{seeds.stop - 1})"
        if what != "all":  # keep what the other model's last training recorded
            models = [m for m in before.get("models", []) if m["name"] not in {m2["name"] for m2 in models}] + models
            metrics = {**{k: v for k, v in before.get("metrics", {}).items() if k not in metrics}, **metrics}
            recipe = {**before.get("training", {}).get("recipe", {}), **recipe}
            data = before.get("training", {}).get("data", data)
        info = {
            "version": version,
            "models": models,
            "training": {"data": data, "recipe": recipe},
            "metrics": metrics,
        }
        card = write_model_card(info, out / "MODEL_CARD.md")
        (out / "training.json").write_text(json.dumps(info, indent=2, default=str) + "\n")
        console.print(f"wrote {', '.join(m['file'] for m in models)} and {card.name} to {out}")
        console.print(json.dumps(metrics, indent=2, default=str))


_SCREENER = None
"""``train-levels``: the screener of this worker process (built once, by the pool's initializer)."""


def _levels_worker_init() -> None:
    global _SCREENER
    from engine.screen import Screener
    from engine.settings import InferenceBackend

    # In-process always: the top vertebrae's features stay in the labelling's result, which
    # Triton's vcf_pipeline does not send back.
    settings = load_settings()
    _SCREENER = Screener(settings.model_copy(
        update={"models": settings.models.model_copy(update={"backend": InferenceBackend.ONNXRUNTIME})}))


def _levels_worker(job: tuple[int, str, bool]) -> list:
    from engine.models.training.top_levels import study_examples

    return study_examples(job[0], job[1], _SCREENER, partial_volume=job[2])


def register_levels(app: typer.Typer) -> None:
    @app.command("train-levels")
    def train_levels(
        typical: str = typer.Option("995000-995039,28200000-28200044",
                                    help="Seeds of phantoms with the default spine mix (N-M ranges, commas)."),
        rib11: str = typer.Option("973000-973029", help="Seeds of phantoms forced to 11 rib pairs."),
        rib13: str = typer.Option("28300000-28300024", help="Seeds of phantoms forced to 13 rib pairs."),
        partial_volume: bool = typer.Option(
            True, "--partial-volume/--default-rendering-only",
            help="Also render every phantom with partial-volume slices (each slice averaging the anatomy over its "
                 "thickness, as a scanner's does; about four times the screening time: 68 against 16 minutes for "
                 "the default seeds with 2 workers) and learn from both renderings."),
        l2: float = typer.Option(1.0, min=0.0, help="L2 penalty of the logistic regression."),
        workers: int = typer.Option(2, min=1, help="Processes screening phantoms (each ~12 s per study)."),
        out: Path = typer.Option(None, help="Models folder to write top_levels.json into (default: models.dir)."),
    ) -> None:
        """Fit the level labelling's top-vertebrae cue (which body is T1) on screened phantoms."""
        from concurrent.futures import ProcessPoolExecutor

        from engine.models.card import write_model_card
        from engine.models.training.top_levels import cross_validate, fit_examples, parse_seeds
        from engine.postprocess.top_levels import TOP_LEVELS_FILE, model_text

        try:
            jobs = [(seed, spine, averaged)
                    for text, spine in ((typical, "typical"), (rib11, "11_thoracic"), (rib13, "13_thoracic"))
                    for seed in parse_seeds(text) for averaged in ((False, True) if partial_volume else (False,))]
        except ValueError as exc:
            raise typer.BadParameter(str(exc)) from None
        if not jobs:
            raise typer.BadParameter("no seeds given: pass --typical, --rib11 or --rib13")
        settings = load_settings()
        setup_logging(settings.logging)
        out = out or settings.models.dir
        started = time.monotonic()
        examples = []
        with _progress() as progress, ProcessPoolExecutor(workers, initializer=_levels_worker_init) as pool:
            task = progress.add_task("screening phantoms", total=len(jobs), note="")
            for done, found in enumerate(pool.map(_levels_worker, jobs), start=1):
                examples += found
                progress.update(task, advance=1, note=f"{len(examples)} vertebrae")
                if not console.is_terminal and (done % 10 == 0 or done == len(jobs)):
                    # Without a terminal the bar is not drawn (an hour's run under nohup said nothing).
                    log.info("train-levels: %d of %d phantom renderings screened, %d vertebrae",
                             done, len(jobs), len(examples))
        minutes = round((time.monotonic() - started) / 60, 1)
        cv = cross_validate(examples, l2)
        counts = {label: len({seed for seed, sp, _averaged in jobs if sp == spine})
                  for label, spine in (("default mix", "typical"), ("11 rib pairs", "11_thoracic"), ("13 rib pairs", "13_thoracic"))}
        phantoms = len({(seed, spine) for seed, spine, _averaged in jobs})
        source = (f"vcfscreen train-levels: {len(examples)} top vertebrae of {phantoms} screened phantoms "
                  f"(default mix: {typical or '-'}; 11 rib pairs: {rib11 or '-'}; 13 rib pairs: {rib13 or '-'})"
                  f"{', each rendered also with partial-volume slices' if partial_volume else ''}, L2 {l2:g}")
        try:
            model = fit_examples(examples, l2, lambda: source)
        except ValueError as exc:
            raise typer.BadParameter(f"cannot fit on these phantoms: {exc}") from None
        out.mkdir(parents=True, exist_ok=True)
        (out / TOP_LEVELS_FILE).write_text(model_text(model))
        info = _previous(out)
        info["labelling_cue"] = {
            "file": TOP_LEVELS_FILE, "model": "multinomial logistic regression (cervical / T1 / T2 / lower) on the "
            "bone around each of the top 4 whole vertebrae (engine.postprocess.top_levels)",
            "data": {"phantoms": counts, "seeds": {"default mix": typical, "11 rib pairs": rib11, "13 rib pairs": rib13},
                     "renderings": "default and partial-volume slices" if partial_volume else "default",
                     "vertebrae": len(examples)},
            "recipe": {"l2": l2, "optimiser": "L-BFGS", "screening_minutes": minutes},
            "cross-validation (by study)": cv,
        }
        if {"version", "models", "training", "metrics"} <= set(info):
            write_model_card(info, out / "MODEL_CARD.md")
            (out / "training.json").write_text(json.dumps(info, indent=2, default=str) + "\n")
        console.print(f"wrote {TOP_LEVELS_FILE} to {out} ({len(examples)} vertebrae, {minutes} min)")
        console.print(json.dumps(cv, indent=2))
