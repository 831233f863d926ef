"""Generate a checkpoint's README.md (model card) from its manifest."""

from pathlib import Path

from schemas.manifest import CheckpointManifest

HALF_PRECISION_CHECK = "half_precision"

CARD_FILE = "README.md"
TABLE_METRICS = (
    ("micro_f1", "micro-F1"),
    ("macro_f1", "macro-F1"),
    ("weighted_f1", "weighted-F1"),
    ("micro_precision", "micro-P"),
    ("micro_recall", "micro-R"),
    ("roc_auc_micro", "ROC-AUC micro"),
    ("roc_auc_macro", "ROC-AUC macro"),
    ("subset_accuracy", "subset acc."),
    ("r_precision", "R-Precision"),
    ("lrap", "LRAP"),
    ("labels_per_document", "labels/doc"),
)
QUICK_PROFILES = {"cpu-quick"}


def metrics_table(metrics: dict[str, dict[str, float]]) -> str:
    """Markdown table: one row per split and threshold setting."""
    header = "| split | thresholds | " + " | ".join(title for _, title in TABLE_METRICS) + " |"
    rule = "|---|---|" + "---:|" * len(TABLE_METRICS)
    rows = []
    for key, values in metrics.items():
        if not any(name in values for name, _ in TABLE_METRICS):
            continue  # not a split's record (the half-precision check)
        split, _, at = key.partition("@")
        cells = " | ".join(
            f"{values[name]:.4f}" if name in values else "" for name, _ in TABLE_METRICS
        )
        rows.append(f"| {split} | {at or 'tuned'} | {cells} |")
    return "\n".join([header, rule, *rows])


def render_model_card(manifest: CheckpointManifest) -> str:
    args = manifest.training_args
    profile = args.get("profile")
    lines = [
        f"# {manifest.name} {manifest.version}",
        "",
        f"Multi-label EuroVoc classifier over {len(manifest.labels)} labels, fine-tuned from "
        f"`{manifest.base_model}` ({manifest.max_length} tokens per document, weights in "
        f"{manifest.dtype}). Produced by eurovoc-stream {manifest.package_version}"
        + (f" (commit {manifest.git_commit[:12]})" if manifest.git_commit else "")
        + f" on {manifest.created_at:%Y-%m-%d %H:%M} UTC.",
        "",
    ]
    if profile in QUICK_PROFILES:
        lines += [
            f"> **Quick model.** Profile `{profile}`: {args.get('train_documents', '?')} "
            f"training documents, {manifest.max_length} tokens, "
            f"{args.get('train_seconds', '?')} s of training on {args.get('device', '?')}. "
            "It shows the pipeline working end to end; it is not the production model "
            "(profile `gpu`).",
            "",
        ]
    lines += [
        "## Metrics",
        "",
        "`tuned`: the thresholds below (tuned on dev); `0.5`: one threshold of 0.5 for every "
        "label. Test numbers were never used for any choice.",
        "",
        metrics_table(manifest.metrics) if manifest.metrics else "No metrics recorded.",
        "",
        *(
            f"Half-precision check on {key.partition('@')[2]}: micro-F1 "
            f"{values['micro_f1_full']:.4f} (source) -> {values['micro_f1_half']:.4f} "
            f"({values['micro_f1_change']:+.4f}).\n"
            for key, values in manifest.metrics.items()
            if key.startswith(f"{HALF_PRECISION_CHECK}@")
        ),
        "## Thresholds",
        "",
        f"Global {manifest.thresholds.global_threshold:.2f}; at-least-one rule "
        f"{'on' if manifest.thresholds.at_least_one else 'off'}; "
        f"{len(manifest.thresholds.per_label)} per-label overrides; tuned on data "
        f"`{manifest.thresholds.tuned_on or 'not recorded'}`.",
        "",
        "| id | label | threshold |",
        "|---:|---|---:|",
        *(
            f"| {label.id} | {label.name} | {manifest.thresholds.for_label(label.name):.2f} |"
            for label in manifest.labels
        ),
        "",
        "## Training",
        "",
        f"- data fingerprint: `{manifest.data_fingerprint}`",
        *(
            f"- {key}: `{args[key]}`"
            for key in (
                "profile",
                "train_documents",
                "max_length",
                "epochs_run",
                "best_epoch",
                "batch_size",
                "grad_accum",
                "learning_rate",
                "stopped_by",
                "train_seconds",
                "samples_per_second",
                "device",
                "precision",
                "processes",
            )
            if args.get(key) is not None
        ),
        "",
        "All settings are in `eurovoc.json` (`training_args`).",
        "",
        "## Use",
        "",
        "This directory is all the worker needs: point its model setting here (see "
        "`eurovoc-worker run --help`). Offline:",
        "",
        "```",
        "eurovoc-train predict --model <this directory> documents.jsonl",
        "eurovoc-train evaluate --model <this directory> --data test.jsonl.gz --report report/",
        "```",
        "",
    ]
    return "\n".join(lines)


def write_model_card(checkpoint_dir: Path, manifest: CheckpointManifest) -> Path:
    path = Path(checkpoint_dir) / CARD_FILE
    path.write_text(render_model_card(manifest), encoding="utf-8")
    return path
