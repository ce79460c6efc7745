"""What the doors and scheduled runs do, each once: ingest runs, train-evaluate-promote,
fresh embeddings and retraining, analysts' write-backs, and the graph's own housekeeping. Each
workflow returns a dataclass, never a loose dict."""
