"""Use cases. Each takes plain values, talks to adapters, and returns domain objects."""
