"""poolshift benchmarks: ratios against peers measured in the same run (see bench/README.md)."""
