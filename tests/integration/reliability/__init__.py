"""Reliability under faults: S3, DynamoDB and Bedrock failing; graceful shutdown under gunicorn."""
