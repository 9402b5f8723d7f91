"""Benchmarks of the export pipeline against devtools/tenantsim: `python -m bench`.

The parent process (bench.runner) starts the simulator and one child process per measured
pipeline (bench.child), so each pipeline's peak RSS is its own. Numbers are reported as
ratios against baselines measured in the same run: the machine is small, shared and noisy.
"""
