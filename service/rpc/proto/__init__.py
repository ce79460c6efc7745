"""Python code generated from protos/ by grpcio-tools at build time (never edited by hand)."""
