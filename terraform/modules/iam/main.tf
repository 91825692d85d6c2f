data "aws_caller_identity" "current" {}

data "aws_partition" "current" {}

data "aws_region" "current" {}

locals {
  partition  = data.aws_partition.current.partition
  region     = data.aws_region.current.name
  account_id = data.aws_caller_identity.current.account_id

  # The SDK names each session's queues <queue_prefix>-<session> and
  # <queue_prefix>-<session>-dlq; the dash keeps deployment "dev" out of "dev2".
  queue_arns    = "arn:${local.partition}:sqs:${local.region}:${local.account_id}:${var.queue_prefix}-*"
  object_arns   = "${var.bucket_arn}/${var.prefix}*"
  log_streams   = "${var.log_group_arn}:log-stream:*"
  parameter_arn = "arn:${local.partition}:ssm:${local.region}:${local.account_id}:parameter${var.config_parameter_name}"
  task_arns     = "arn:${local.partition}:ecs:${local.region}:${local.account_id}:task/${element(split("/", var.cluster_arn), 1)}/*"
  task_def_arns = "arn:${local.partition}:ecs:${local.region}:${local.account_id}:task-definition/*"

  # Fargate vCPU quotas the SDK's wave queue reads: On-Demand and Spot.
  quota_arns = [
    "arn:${local.partition}:servicequotas:${local.region}:${local.account_id}:fargate/L-3032A538",
    "arn:${local.partition}:servicequotas:${local.region}:${local.account_id}:fargate/L-36FBB829",
  ]
}

data "aws_iam_policy_document" "assume_ecs_tasks" {
  statement {
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["ecs-tasks.amazonaws.com"]
    }

    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }
  }
}

################################################################################
# Execution role: pulls the image and ships container logs
################################################################################

resource "aws_iam_role" "execution" {
  name               = "${var.name}-execution"
  description        = "starburst ${var.name}: lets ECS pull the worker image and write its logs"
  assume_role_policy = data.aws_iam_policy_document.assume_ecs_tasks.json

  tags = var.tags
}

resource "aws_iam_role_policy_attachment" "execution_managed" {
  count = var.attach_managed_execution_policy ? 1 : 0

  role       = aws_iam_role.execution.name
  policy_arn = "arn:${local.partition}:iam::aws:policy/service-role/AmazonECSTaskExecutionRolePolicy"
}

data "aws_iam_policy_document" "execution" {
  #checkov:skip=CKV_AWS_356:ecr:GetAuthorizationToken has no resource-level permissions; AWS requires "*"
  #checkov:skip=CKV_AWS_111:The only "*" statement is ecr:GetAuthorizationToken, which cannot be scoped
  statement {
    sid       = "EcrAuth"
    actions   = ["ecr:GetAuthorizationToken"]
    resources = ["*"]
  }

  statement {
    sid = "EcrPull"
    actions = [
      "ecr:BatchCheckLayerAvailability",
      "ecr:BatchGetImage",
      "ecr:GetDownloadUrlForLayer",
    ]
    resources = [var.ecr_repository_arn]
  }

  statement {
    sid       = "LogWrites"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = [local.log_streams]
  }
}

resource "aws_iam_role_policy" "execution" {
  name   = "pull-and-log"
  role   = aws_iam_role.execution.id
  policy = data.aws_iam_policy_document.execution.json
}

################################################################################
# Task role: what the worker code itself may touch
################################################################################

resource "aws_iam_role" "task" {
  name               = "${var.name}-task"
  description        = "starburst ${var.name}: session objects, session queues and the log group, nothing else"
  assume_role_policy = data.aws_iam_policy_document.assume_ecs_tasks.json

  tags = var.tags
}

data "aws_iam_policy_document" "task" {
  statement {
    sid = "SessionObjects"
    actions = [
      "s3:AbortMultipartUpload",
      "s3:GetObject",
      "s3:PutObject",
    ]
    resources = [local.object_arns]
  }

  statement {
    sid = "SessionQueues"
    actions = [
      "sqs:ChangeMessageVisibility",
      "sqs:DeleteMessage",
      "sqs:GetQueueAttributes",
      "sqs:GetQueueUrl",
      "sqs:ReceiveMessage",
    ]
    resources = [local.queue_arns]
  }

  statement {
    sid       = "WorkerLogs"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = [local.log_streams]
  }
}

resource "aws_iam_role_policy" "task" {
  name   = "session-access"
  role   = aws_iam_role.task.id
  policy = data.aws_iam_policy_document.task.json
}

################################################################################
# SDK user policy (optional): attach it to the people or CI that run sessions
################################################################################

data "aws_iam_policy_document" "sdk_user" {
  #checkov:skip=CKV_AWS_356:Only actions without resource-level permissions (task definition calls, ecr:GetAuthorizationToken) use "*", and RunTask-adjacent ones carry an ecs:cluster condition
  #checkov:skip=CKV_AWS_111:Write actions on "*" are RegisterTaskDefinition/DeregisterTaskDefinition, which AWS cannot scope, and TagResource, limited to RunTask/RegisterTaskDefinition
  statement {
    sid       = "ReadConfig"
    actions   = ["ssm:GetParameter"]
    resources = [local.parameter_arn]
  }

  statement {
    sid       = "ListSessionObjects"
    actions   = ["s3:ListBucket"]
    resources = [var.bucket_arn]

    condition {
      test     = "StringLike"
      variable = "s3:prefix"
      values   = ["${var.prefix}*"]
    }
  }

  statement {
    sid = "SessionObjects"
    actions = [
      "s3:AbortMultipartUpload",
      "s3:DeleteObject",
      "s3:GetObject",
      "s3:PutObject",
    ]
    resources = [local.object_arns]
  }

  statement {
    sid = "SessionQueues"
    actions = [
      "sqs:ChangeMessageVisibility",
      "sqs:CreateQueue",
      "sqs:DeleteMessage",
      "sqs:DeleteQueue",
      "sqs:GetQueueAttributes",
      "sqs:GetQueueUrl",
      "sqs:PurgeQueue",
      "sqs:ReceiveMessage",
      "sqs:SendMessage",
      "sqs:SetQueueAttributes",
      "sqs:TagQueue",
    ]
    resources = [local.queue_arns]
  }

  statement {
    sid = "TaskDefinitions"
    actions = [
      "ecs:DeregisterTaskDefinition",
      "ecs:DescribeTaskDefinition",
      "ecs:ListTaskDefinitions",
      "ecs:RegisterTaskDefinition",
    ]
    resources = ["*"]
  }

  statement {
    sid       = "RunTasks"
    actions   = ["ecs:RunTask"]
    resources = [local.task_def_arns]

    condition {
      test     = "ArnEquals"
      variable = "ecs:cluster"
      values   = [var.cluster_arn]
    }
  }

  statement {
    sid       = "WatchTasks"
    actions   = ["ecs:DescribeTasks", "ecs:StopTask"]
    resources = [local.task_arns]
  }

  statement {
    sid       = "ListTasks"
    actions   = ["ecs:ListTasks"]
    resources = ["*"]

    condition {
      test     = "ArnEquals"
      variable = "ecs:cluster"
      values   = [var.cluster_arn]
    }
  }

  statement {
    sid       = "TagOnCreate"
    actions   = ["ecs:TagResource"]
    resources = ["*"]

    condition {
      test     = "StringEquals"
      variable = "ecs:CreateAction"
      values   = ["RunTask", "RegisterTaskDefinition"]
    }
  }

  statement {
    sid       = "PassWorkerRoles"
    actions   = ["iam:PassRole"]
    resources = [aws_iam_role.execution.arn, aws_iam_role.task.arn]

    condition {
      test     = "StringEquals"
      variable = "iam:PassedToService"
      values   = ["ecs-tasks.amazonaws.com"]
    }
  }

  statement {
    sid = "ReadWorkerLogs"
    actions = [
      "logs:DescribeLogStreams",
      "logs:FilterLogEvents",
      "logs:GetLogEvents",
    ]
    resources = [var.log_group_arn, local.log_streams]
  }

  statement {
    sid       = "FargateQuota"
    actions   = ["servicequotas:GetServiceQuota"]
    resources = local.quota_arns
  }

  statement {
    sid       = "EcrAuth"
    actions   = ["ecr:GetAuthorizationToken"]
    resources = ["*"]
  }

  statement {
    sid = "EcrPush"
    actions = [
      "ecr:BatchCheckLayerAvailability",
      "ecr:BatchGetImage",
      "ecr:CompleteLayerUpload",
      "ecr:DescribeImages",
      "ecr:GetDownloadUrlForLayer",
      "ecr:InitiateLayerUpload",
      "ecr:PutImage",
      "ecr:UploadLayerPart",
    ]
    resources = [var.ecr_repository_arn]
  }
}

resource "aws_iam_policy" "sdk_user" {
  count = var.create_sdk_user_policy ? 1 : 0

  name        = "${var.name}-sdk-user"
  description = "starburst ${var.name}: what a person or CI job needs to run sessions"
  policy      = data.aws_iam_policy_document.sdk_user.json

  tags = var.tags
}
