resource "aws_cloudwatch_log_group" "this" {
  #checkov:skip=CKV_AWS_158:Logs are encrypted at rest by CloudWatch with its own key; a customer-managed KMS key costs $1/month idle
  #checkov:skip=CKV_AWS_338:Retention is the retention_in_days variable; a year of worker logs by default would cost more than the whole idle budget
  name              = var.name
  retention_in_days = var.retention_in_days

  tags = var.tags
}
