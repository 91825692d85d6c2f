variable "region" {
  description = "AWS region to deploy into"
  type        = string
  default     = "us-east-1"
}

variable "deployment" {
  description = "Name of the deployment"
  type        = string
  default     = "default"
}
