"""Execution: run plans against the database (``read``, ``write``); driver errors are translated by
``dxapi.dberrors``."""
