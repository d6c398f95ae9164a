"""SQL building: plans → SQLAlchemy Core statements over reflected columns, values always bound."""
