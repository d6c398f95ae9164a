"""Authentication and authorization: who is calling (``principals``), how they prove it (``tokens``,
``oauth``, API keys), and how secrets are kept (``passwords``)."""
