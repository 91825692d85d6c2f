variable "name" {
  description = "Name of the ECR repository"
  type        = string
}

variable "keep_images" {
  description = "Number of newest images the lifecycle policy keeps"
  type        = number
  default     = 10
}

variable "force_delete" {
  description = "Whether destroy deletes the repository even when it still holds images"
  type        = bool
  default     = false
}

variable "tags" {
  description = "Tags added to the repository"
  type        = map(string)
  default     = {}
}
