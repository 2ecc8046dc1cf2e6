"""Where the daemon's objects come from: the API server (watch) or a directory (manifests)."""
