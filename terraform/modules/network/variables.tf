variable "name" {
  description = "Name prefix of every network resource"
  type        = string
}

variable "vpc_id" {
  description = "ID of an existing VPC to deploy into; null creates a new VPC"
  type        = string
  default     = null
}

variable "subnet_ids" {
  description = "IDs of existing subnets for the Fargate tasks; required when vpc_id is set"
  type        = list(string)
  default     = []
}

variable "existing_route_table_ids" {
  description = "Route tables of the existing VPC to attach the S3 gateway endpoint to; empty attaches none"
  type        = list(string)
  default     = []
}

variable "vpc_cidr" {
  description = "CIDR block of the created VPC"
  type        = string
  default     = "10.42.0.0/16"

  validation {
    condition     = can(cidrhost(var.vpc_cidr, 0))
    error_message = "vpc_cidr must be a CIDR block such as 10.42.0.0/16."
  }
}

variable "availability_zones" {
  description = "Availability zones of the created subnets; empty takes the first availability_zone_count zones of the region"
  type        = list(string)
  default     = []
}

variable "availability_zone_count" {
  description = "Number of availability zones to spread the created subnets over"
  type        = number
  default     = 2

  validation {
    condition     = var.availability_zone_count >= 2 && var.availability_zone_count <= 3
    error_message = "availability_zone_count must be 2 or 3."
  }
}

variable "public_subnet_cidrs" {
  description = "CIDR blocks of the created public subnets, one per availability zone in order"
  type        = list(string)
  default     = ["10.42.0.0/20", "10.42.16.0/20", "10.42.32.0/20"]
}

variable "private_subnet_cidrs" {
  description = "CIDR blocks of the created private subnets, used only with enable_nat_gateway"
  type        = list(string)
  default     = ["10.42.128.0/20", "10.42.144.0/20", "10.42.160.0/20"]
}

variable "enable_nat_gateway" {
  description = "Whether to put tasks in private subnets behind one NAT gateway (about $37/month idle: $0.045/h plus its IPv4 address $0.005/h, and $0.045/GB)"
  type        = bool
  default     = false
}

variable "enable_s3_endpoint" {
  description = "Whether to add a free S3 gateway endpoint so task traffic to S3 skips the internet and NAT"
  type        = bool
  default     = true
}

variable "assign_public_ip" {
  description = "Whether tasks in existing subnets get a public IP; ignored when the VPC is created here"
  type        = bool
  default     = true
}

variable "tags" {
  description = "Tags added to every network resource"
  type        = map(string)
  default     = {}
}
