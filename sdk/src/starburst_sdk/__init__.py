"""starburst: send Python function calls to AWS Fargate, get futures back."""
