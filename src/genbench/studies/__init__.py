"""Studies: YAML study files, profiles, and the pipeline train -> sample -> evaluate -> report."""
