"""Reflection of the served database: which tables and columns exist, and which API types fit them."""
