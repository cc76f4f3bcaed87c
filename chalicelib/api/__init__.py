"""The HTTP layer: the Chalice app class, blueprints, the request boundary and error mapping."""
