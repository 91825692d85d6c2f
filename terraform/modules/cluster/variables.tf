variable "name" {
  description = "Name of the ECS cluster"
  type        = string
}

variable "container_insights" {
  description = "Whether to turn on Container Insights, which bills CloudWatch metrics per running task"
  type        = bool
  default     = false
}

variable "tags" {
  description = "Tags added to the cluster"
  type        = map(string)
  default     = {}
}
