"""The single DynamoDB table: keys, PynamoDB item models, and repositories."""
