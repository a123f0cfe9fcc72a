"""The streaming runtime: frame budget and pacing, snapshot files, rewind, the CLI."""
