variable "name" {
  description = "Name prefix of the roles and policies"
  type        = string
}

variable "bucket_arn" {
  description = "ARN of the session bucket"
  type        = string
}

variable "prefix" {
  description = "Key prefix of session objects in the bucket, ending in a slash"
  type        = string
}

variable "queue_prefix" {
  description = "Prefix of the names of the SQS queues the SDK creates"
  type        = string
}

variable "log_group_arn" {
  description = "ARN of the worker log group, without a trailing :*"
  type        = string
}

variable "ecr_repository_arn" {
  description = "ARN of the worker image repository"
  type        = string
}

variable "cluster_arn" {
  description = "ARN of the ECS cluster the SDK runs tasks on"
  type        = string
}

variable "config_parameter_name" {
  description = "Name of the SSM parameter holding the config document, starting with a slash"
  type        = string
}

variable "attach_managed_execution_policy" {
  description = "Whether the execution role also gets the AWS-managed AmazonECSTaskExecutionRolePolicy"
  type        = bool
  default     = true
}

variable "create_sdk_user_policy" {
  description = "Whether to create a managed policy with what an SDK user needs"
  type        = bool
  default     = true
}

variable "tags" {
  description = "Tags added to the roles and policies"
  type        = map(string)
  default     = {}
}
