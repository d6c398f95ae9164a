"""Benchmarks: dxapi against a thin hand-written reference server on the same PostgreSQL data.

`reference` is the baseline server, `load` drives HTTP load (wrk or a Python fallback) and `run` is what
`make bench` calls: it builds the data, starts both servers and prints the comparison. See README.md.
"""
