"""Report layer: figures and an HTML page rendered from saved metrics.json, histories and sample banks only."""
