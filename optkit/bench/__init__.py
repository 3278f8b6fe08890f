"""Benchmarks: one module per algorithm module (``optkit bench <module>``).

Each benchmark module defines ``add_arguments(parser)`` and ``run(args) -> int``; shared helpers
for records and output live in :mod:`optkit.bench._common`.
"""
