data "aws_caller_identity" "current" {}

data "aws_region" "current" {}

locals {
  name       = "starburst-${var.deployment}"
  region     = data.aws_region.current.name
  account_id = data.aws_caller_identity.current.account_id

  bucket_name = coalesce(var.bucket_name, "${local.name}-${local.account_id}-${local.region}")

  tags = merge(var.tags, {
    "starburst:deployment" = var.deployment
    "managed-by"           = "terraform"
  })

  # The document the SDK reads: keys and JSON types must match REQUIRED and
  # OPTIONAL in starburst_sdk._config (tests/terraform holds both to it).
  config = {
    version            = 1
    deployment         = var.deployment
    region             = local.region
    bucket             = module.storage.bucket_name
    prefix             = var.prefix
    cluster            = module.cluster.cluster_name
    subnets            = module.network.subnet_ids
    security_groups    = [module.network.security_group_id]
    assign_public_ip   = module.network.assign_public_ip
    execution_role_arn = module.iam.execution_role_arn
    task_role_arn      = module.iam.task_role_arn
    log_group          = module.logging.log_group_name
    ecr_repository_url = module.ecr.repository_url
    queue_prefix       = local.name
    worker_image       = var.worker_image
  }
  config_parameter_name = "/starburst/${var.deployment}/config"
}

module "network" {
  source = "./modules/network"

  name                     = local.name
  vpc_id                   = var.vpc_id
  subnet_ids               = var.subnet_ids
  existing_route_table_ids = var.existing_route_table_ids
  assign_public_ip         = var.assign_public_ip
  vpc_cidr                 = var.vpc_cidr
  availability_zones       = var.availability_zones
  availability_zone_count  = var.availability_zone_count
  public_subnet_cidrs      = var.public_subnet_cidrs
  private_subnet_cidrs     = var.private_subnet_cidrs
  enable_nat_gateway       = var.enable_nat_gateway
  enable_s3_endpoint       = var.enable_s3_endpoint

  tags = local.tags
}

module "storage" {
  source = "./modules/storage"

  bucket_name     = local.bucket_name
  prefix          = var.prefix
  expiration_days = var.session_expiration_days
  force_destroy   = var.force_destroy

  tags = local.tags
}

module "logging" {
  source = "./modules/logging"

  name              = "/starburst/${var.deployment}"
  retention_in_days = var.log_retention_days

  tags = local.tags
}

module "ecr" {
  source = "./modules/ecr"

  name         = local.name
  keep_images  = var.ecr_keep_images
  force_delete = var.force_destroy

  tags = local.tags
}

module "cluster" {
  source = "./modules/cluster"

  name               = local.name
  container_insights = var.container_insights

  tags = local.tags
}

module "iam" {
  source = "./modules/iam"

  name                            = local.name
  bucket_arn                      = module.storage.bucket_arn
  prefix                          = var.prefix
  queue_prefix                    = local.name
  log_group_arn                   = module.logging.log_group_arn
  ecr_repository_arn              = module.ecr.repository_arn
  cluster_arn                     = module.cluster.cluster_arn
  config_parameter_name           = local.config_parameter_name
  attach_managed_execution_policy = var.attach_managed_execution_policy
  create_sdk_user_policy          = var.create_sdk_user_policy

  tags = local.tags
}

################################################################################
# The config document the SDK reads
################################################################################

resource "aws_ssm_parameter" "config" {
  #checkov:skip=CKV_AWS_337:SecureString with the AWS-managed aws/ssm key costs nothing; a customer-managed KMS key costs $1/month idle, and the document holds names and ARNs, no secrets
  name        = local.config_parameter_name
  description = "starburst ${var.deployment}: where the SDK finds its bucket, cluster, roles and network"
  type        = "SecureString"
  value       = jsonencode(local.config)

  tags = local.tags
}
