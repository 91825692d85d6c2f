variable "bucket_name" {
  description = "Name of the S3 bucket for session objects"
  type        = string
}

variable "prefix" {
  description = "Key prefix under which session objects live, ending in a slash"
  type        = string
  default     = "starburst/"
}

variable "expiration_days" {
  description = "Days after which session objects under the prefix are deleted"
  type        = number
  default     = 7
}

variable "force_destroy" {
  description = "Whether destroy deletes the bucket even when it still holds objects"
  type        = bool
  default     = false
}

variable "tags" {
  description = "Tags added to the bucket"
  type        = map(string)
  default     = {}
}
