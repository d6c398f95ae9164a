"""Plans: the resolved intent of a request (``types``) and how requests become plans (``build``)."""
