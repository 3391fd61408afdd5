"""Benchmarks for blit: deterministic datasets, blit vs rsync/cp side by side (`make bench`)."""
