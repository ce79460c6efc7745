"""The service layer: the ``mmgraph`` CLI now; the gRPC service follows."""
