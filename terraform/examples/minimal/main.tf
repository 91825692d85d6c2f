provider "aws" {
  region = var.region
}

module "starburst" {
  source = "../.."

  deployment = var.deployment
}
