"""In-memory repositories: the Protocols of chalicelib.services without DynamoDB."""
