variable "deployment" {
  description = "Name of this deployment; the SDK finds it as STARBURST_DEPLOYMENT"
  type        = string
  default     = "default"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{0,19}$", var.deployment))
    error_message = "deployment must be 1-20 lower-case letters, digits or dashes, starting with a letter."
  }
}

variable "bucket_name" {
  description = "Name of the session bucket; null derives starburst-<deployment>-<account>-<region>"
  type        = string
  default     = null
}

variable "prefix" {
  description = "Key prefix of session objects in the bucket, ending in a slash"
  type        = string
  default     = "starburst/"

  validation {
    condition     = can(regex("^([A-Za-z0-9!_.*'()-]+/)+$", var.prefix))
    error_message = "prefix must be one or more path segments, each ending in a slash, such as starburst/."
  }
}

variable "session_expiration_days" {
  description = "Days after which session objects are deleted from the bucket"
  type        = number
  default     = 7

  validation {
    condition     = var.session_expiration_days >= 1
    error_message = "session_expiration_days must be at least 1."
  }
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

variable "assign_public_ip" {
  description = "Whether tasks in existing subnets get a public IP; ignored when the VPC is created here"
  type        = bool
  default     = true
}

variable "vpc_cidr" {
  description = "CIDR block of the created VPC"
  type        = string
  default     = "10.42.0.0/16"
}

variable "availability_zones" {
  description = "Availability zones of the created subnets; empty takes the first availability_zone_count zones of the region"
  type        = list(string)
  default     = []
}

variable "availability_zone_count" {
  description = "Number of availability zones (2 or 3) to spread the created subnets over"
  type        = number
  default     = 2
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

variable "log_retention_days" {
  description = "Days CloudWatch keeps worker logs"
  type        = number
  default     = 30

  validation {
    condition     = contains([1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653], var.log_retention_days)
    error_message = "log_retention_days must be a value CloudWatch Logs accepts, such as 7, 30 or 365."
  }
}

variable "ecr_keep_images" {
  description = "Number of newest worker images the ECR lifecycle policy keeps"
  type        = number
  default     = 10

  validation {
    condition     = var.ecr_keep_images >= 1
    error_message = "ecr_keep_images must be at least 1."
  }
}

variable "container_insights" {
  description = "Whether to turn on ECS Container Insights, which bills CloudWatch metrics per running task"
  type        = bool
  default     = false
}

variable "worker_image" {
  description = "Worker image URI the SDK uses instead of building one; empty lets the SDK build and push"
  type        = string
  default     = ""
}

variable "attach_managed_execution_policy" {
  description = "Whether the execution role also gets the AWS-managed AmazonECSTaskExecutionRolePolicy"
  type        = bool
  default     = true
}

variable "create_sdk_user_policy" {
  description = "Whether to create an IAM policy with what an SDK user needs"
  type        = bool
  default     = true
}

variable "force_destroy" {
  description = "Whether destroy also deletes a bucket holding objects and a repository holding images"
  type        = bool
  default     = false
}

variable "tags" {
  description = "Tags added to every resource, besides the deployment and managed-by tags"
  type        = map(string)
  default     = {}
}
