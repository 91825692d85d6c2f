variable "name" {
  description = "Name of the CloudWatch Logs group"
  type        = string
}

variable "retention_in_days" {
  description = "Days CloudWatch keeps worker logs"
  type        = number
  default     = 30
}

variable "tags" {
  description = "Tags added to the log group"
  type        = map(string)
  default     = {}
}
