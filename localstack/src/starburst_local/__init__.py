"""The starburst local cloud: LocalStack plus a local Fargate runner hosting moto."""
