output "execution_role_arn" {
  description = "ARN of the task execution role"
  value       = aws_iam_role.execution.arn
}

output "task_role_arn" {
  description = "ARN of the task role the worker code runs as"
  value       = aws_iam_role.task.arn
}

output "sdk_user_policy_arn" {
  description = "ARN of the SDK user policy, or null when not created"
  value       = try(aws_iam_policy.sdk_user[0].arn, null)
}

output "sdk_user_policy_json" {
  description = "The SDK user policy document, to attach by other means"
  value       = data.aws_iam_policy_document.sdk_user.json
}
