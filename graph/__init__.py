"""The graph layer: schema, Neo4j store, local Neo4j, and export to PyTorch Geometric.

Imports nothing from the other mmgraph packages; everything else stands on it.
"""
