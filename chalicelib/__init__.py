"""The ledger application package: domain, services, adapters and HTTP layer."""
