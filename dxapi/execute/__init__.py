"""Execution: run plans against the database (``read``, ``write``), translating driver errors (``dberrors``)."""
