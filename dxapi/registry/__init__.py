"""The configuration: stored rows (``store``), their model (``model``), the immutable runtime view
(``snapshot``) and how workers keep it current (``reload``)."""
