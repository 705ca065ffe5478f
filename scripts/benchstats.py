"""Summaries the benchmarks print: median and p99 of each row, and its ratio to the baseline
row measured in the same run."""

import statistics


def percentile(samples, fraction):
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(round(fraction * (len(ordered) - 1))))]


def show(name, samples_ms, baseline=None, is_baseline=False, width=52):
    """Prints one row; returns its median, to serve as a baseline."""
    median = statistics.median(samples_ms)
    ratio = "  base " if is_baseline else f"{median / baseline:6.2f}×" if baseline else ""
    print(f"{name:<{width}} n={len(samples_ms):<5} median {median:7.2f} ms   "
          f"p99 {percentile(samples_ms, 0.99):7.2f} ms   {ratio}")
    return median
