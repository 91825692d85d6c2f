output "ssm_parameter_name" {
  description = "Name of the SSM parameter the SDK reads"
  value       = module.starburst.ssm_parameter_name
}

output "config" {
  description = "The config document the SDK reads"
  value       = module.starburst.config
}
