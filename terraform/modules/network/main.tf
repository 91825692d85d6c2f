locals {
  create_vpc = var.vpc_id == null
  vpc_id     = local.create_vpc ? aws_vpc.this[0].id : var.vpc_id

  az_count = !local.create_vpc ? 0 : (
    length(var.availability_zones) > 0 ? length(var.availability_zones) : var.availability_zone_count
  )
  azs = (
    length(var.availability_zones) > 0 ? var.availability_zones :
    slice(data.aws_availability_zones.available[0].names, 0, var.availability_zone_count)
  )

  nat = local.create_vpc && var.enable_nat_gateway

  task_subnet_ids = (
    !local.create_vpc ? var.subnet_ids :
    local.nat ? aws_subnet.private[*].id : aws_subnet.public[*].id
  )
  assign_public_ip = local.create_vpc ? !local.nat : var.assign_public_ip

  endpoint_route_table_ids = (
    !local.create_vpc ? var.existing_route_table_ids :
    concat(aws_route_table.public[*].id, aws_route_table.private[*].id)
  )
}

data "aws_availability_zones" "available" {
  #checkov:skip=CKV_AWS_394:Read only when availability_zones is empty, to take the first availability_zone_count zones; set availability_zones to pin them
  count = local.create_vpc && length(var.availability_zones) == 0 ? 1 : 0

  state = "available"
}

################################################################################
# VPC
################################################################################

resource "aws_vpc" "this" {
  #checkov:skip=CKV2_AWS_11:Flow logs bill per GB ingested; the VPC carries only worker traffic and idle cost must stay near zero
  count = local.create_vpc ? 1 : 0

  cidr_block           = var.vpc_cidr
  enable_dns_support   = true
  enable_dns_hostnames = true

  tags = merge(var.tags, { Name = var.name })
}

resource "aws_default_security_group" "this" {
  count = local.create_vpc ? 1 : 0

  vpc_id = aws_vpc.this[0].id

  tags = merge(var.tags, { Name = "${var.name}-default-deny" })
}

################################################################################
# Public subnets
################################################################################

resource "aws_subnet" "public" {
  #checkov:skip=CKV_AWS_130:Public IPs on launch let tasks reach AWS APIs without a NAT gateway, which would cost about $37/month idle; there is no ingress
  count = local.az_count

  vpc_id                  = aws_vpc.this[0].id
  cidr_block              = var.public_subnet_cidrs[count.index]
  availability_zone       = local.azs[count.index]
  map_public_ip_on_launch = true

  tags = merge(var.tags, { Name = "${var.name}-public-${local.azs[count.index]}" })
}

resource "aws_internet_gateway" "this" {
  count = local.create_vpc ? 1 : 0

  vpc_id = aws_vpc.this[0].id

  tags = merge(var.tags, { Name = var.name })
}

resource "aws_route_table" "public" {
  count = local.create_vpc ? 1 : 0

  vpc_id = aws_vpc.this[0].id

  tags = merge(var.tags, { Name = "${var.name}-public" })
}

resource "aws_route" "public_internet" {
  count = local.create_vpc ? 1 : 0

  route_table_id         = aws_route_table.public[0].id
  destination_cidr_block = "0.0.0.0/0"
  gateway_id             = aws_internet_gateway.this[0].id
}

resource "aws_route_table_association" "public" {
  count = local.az_count

  subnet_id      = aws_subnet.public[count.index].id
  route_table_id = aws_route_table.public[0].id
}

################################################################################
# Private subnets and NAT gateway (optional, not free)
################################################################################

resource "aws_subnet" "private" {
  count = local.nat ? local.az_count : 0

  vpc_id            = aws_vpc.this[0].id
  cidr_block        = var.private_subnet_cidrs[count.index]
  availability_zone = local.azs[count.index]

  tags = merge(var.tags, { Name = "${var.name}-private-${local.azs[count.index]}" })
}

resource "aws_eip" "nat" {
  count = local.nat ? 1 : 0

  domain = "vpc"

  tags = merge(var.tags, { Name = "${var.name}-nat" })
}

resource "aws_nat_gateway" "this" {
  count = local.nat ? 1 : 0

  allocation_id = aws_eip.nat[0].id
  subnet_id     = aws_subnet.public[0].id

  tags = merge(var.tags, { Name = var.name })

  depends_on = [aws_internet_gateway.this]
}

resource "aws_route_table" "private" {
  count = local.nat ? 1 : 0

  vpc_id = aws_vpc.this[0].id

  tags = merge(var.tags, { Name = "${var.name}-private" })
}

resource "aws_route" "private_nat" {
  count = local.nat ? 1 : 0

  route_table_id         = aws_route_table.private[0].id
  destination_cidr_block = "0.0.0.0/0"
  nat_gateway_id         = aws_nat_gateway.this[0].id
}

resource "aws_route_table_association" "private" {
  count = local.nat ? local.az_count : 0

  subnet_id      = aws_subnet.private[count.index].id
  route_table_id = aws_route_table.private[0].id
}

################################################################################
# S3 gateway endpoint (free)
################################################################################

resource "aws_vpc_endpoint" "s3" {
  count = var.enable_s3_endpoint && (local.create_vpc || length(var.existing_route_table_ids) > 0) ? 1 : 0

  vpc_id            = local.vpc_id
  service_name      = "com.amazonaws.${data.aws_region.current.name}.s3"
  vpc_endpoint_type = "Gateway"
  route_table_ids   = local.endpoint_route_table_ids

  tags = merge(var.tags, { Name = "${var.name}-s3" })
}

data "aws_region" "current" {}

################################################################################
# Task security group: no ingress, egress only
################################################################################

resource "aws_security_group" "this" {
  #checkov:skip=CKV2_AWS_5:The SDK attaches this group to every task it runs; nothing in Terraform uses it
  #checkov:skip=CKV_AWS_382:Workers must reach AWS API endpoints and whatever the user's functions call; the group allows no ingress at all
  name        = "${var.name}-tasks"
  description = "starburst Fargate workers: no ingress, egress only"
  vpc_id      = local.vpc_id

  egress {
    description = "Outbound to AWS APIs and endpoints the user code calls"
    from_port   = 0
    to_port     = 0
    protocol    = "-1"
    cidr_blocks = ["0.0.0.0/0"]
  }

  tags = merge(var.tags, { Name = "${var.name}-tasks" })
}
