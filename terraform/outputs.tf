output "config" {
  description = "The config document written to SSM, as an object"
  value       = local.config
}

output "ssm_parameter_name" {
  description = "Name of the SSM parameter holding the config document"
  value       = aws_ssm_parameter.config.name
}

output "region" {
  description = "Region the deployment lives in"
  value       = local.region
}

output "s3_bucket_name" {
  description = "Name of the session bucket"
  value       = module.storage.bucket_name
}

output "ecs_cluster_name" {
  description = "Name of the ECS cluster"
  value       = module.cluster.cluster_name
}

output "ecr_repository_url" {
  description = "URL of the worker image repository"
  value       = module.ecr.repository_url
}

output "cloudwatch_log_group_name" {
  description = "Name of the worker log group"
  value       = module.logging.log_group_name
}

output "iam_execution_role_arn" {
  description = "ARN of the task execution role"
  value       = module.iam.execution_role_arn
}

output "iam_task_role_arn" {
  description = "ARN of the task role"
  value       = module.iam.task_role_arn
}

output "iam_sdk_user_policy_arn" {
  description = "ARN of the SDK user policy, or null when not created"
  value       = module.iam.sdk_user_policy_arn
}

output "vpc_id" {
  description = "ID of the VPC the tasks run in"
  value       = module.network.vpc_id
}

output "nat_gateway_id" {
  description = "ID of the NAT gateway, or null when none was created"
  value       = module.network.nat_gateway_id
}
