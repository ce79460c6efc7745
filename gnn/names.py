"""Names the doors show before any model is loaded: the models of the evaluation and its metrics.

Torch-free on purpose: the CLI lists these in its help without importing torch or PyG.
"""

MODEL_NAMES = (
    "gcn",
    "mgat",
    "hgt",
    "early",
    "late",
    "hybrid",
    "autoencoder",
    "adversarial",
    "cca",
    "dcca",
)
METRICS = (
    "mrr",
    "hits@1",
    "hits@3",
    "hits@10",
    "auc",
    "ece",
    "nmi",
    "ari",
    "recall@1",
    "recall@10",
)
# A row of the evaluation's table: the metrics and the training time.
REPORT_METRICS = (*METRICS, "train_seconds")
# The staleness share above which a promoted run is retrained by default.
DEFAULT_STALENESS_THRESHOLD = 0.2
