"""Benchmark harness: ``python -m benchmarks.run [--smoke] [--only SECTION[,SECTION]] [--out PATH]``.

Each section is a function ``(smoke, device) -> SectionResult`` registered in
:data:`benchmarks.run.SECTIONS`; the runner prints one table per section and writes
``benchmarks/results/latest.json`` (machine info, date, command line, rows and target checks).
"""
