"""A virtual cluster in network namespaces: nodes with bridges, pods with agents."""
