"""Adapters to the outside world: DynamoDB, clock, and (later) payment providers."""
