provider "aws" {
  region = var.region
}

module "starburst" {
  source = "../.."

  deployment               = var.deployment
  vpc_id                   = var.vpc_id
  subnet_ids               = var.subnet_ids
  existing_route_table_ids = var.route_table_ids
  assign_public_ip         = false

  tags = {
    team = "research"
  }
}
