variable "region" {
  description = "AWS region to deploy into"
  type        = string
  default     = "us-east-1"
}

variable "deployment" {
  description = "Name of the deployment"
  type        = string
  default     = "shared"
}

variable "vpc_id" {
  description = "ID of the existing VPC"
  type        = string
  default     = "vpc-0123456789abcdef0"
}

variable "subnet_ids" {
  description = "IDs of existing private subnets that reach the internet through a NAT gateway"
  type        = list(string)
  default     = ["subnet-0123456789abcdef0", "subnet-0fedcba9876543210"]
}

variable "route_table_ids" {
  description = "Route tables of those subnets, for the S3 gateway endpoint"
  type        = list(string)
  default     = []
}
