output "vpc_id" {
  description = "ID of the VPC the tasks run in"
  value       = local.vpc_id
}

output "subnet_ids" {
  description = "IDs of the subnets the tasks run in"
  value       = local.task_subnet_ids
}

output "security_group_id" {
  description = "ID of the egress-only security group of the tasks"
  value       = aws_security_group.this.id
}

output "assign_public_ip" {
  description = "Whether tasks need a public IP to reach AWS APIs"
  value       = local.assign_public_ip
}

output "nat_gateway_id" {
  description = "ID of the NAT gateway, or null when none was created"
  value       = try(aws_nat_gateway.this[0].id, null)
}

output "s3_endpoint_id" {
  description = "ID of the S3 gateway endpoint, or null when none was created"
  value       = try(aws_vpc_endpoint.s3[0].id, null)
}
