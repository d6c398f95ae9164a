"""Rate limits and quotas (``DXAPI_RATE_LIMIT``) and the shared counter store behind them and the throttles.

``rates`` parses ``600/minute``; ``counters`` counts per key in the database or in Redis, for every worker and
host at once; ``quota`` decides for each data request and renders ``RateLimit`` / ``RateLimit-Policy``.
"""
