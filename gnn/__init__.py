"""Fused node embeddings (GCN, MGAT, HGT) and fusion baselines; built on ``mmgraph.graph``."""
