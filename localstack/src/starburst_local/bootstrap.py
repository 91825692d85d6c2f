"""Provision a deployment on the local cloud with plain boto3 (stand-in for Terraform).

:func:`bootstrap` creates, idempotently: the S3 bucket, the execution and task IAM
roles, the CloudWatch log group (LocalStack); the ECR repository, the ECS cluster with
FARGATE / FARGATE_SPOT, a VPC + subnet + security group (moto, in the runner); then
writes the SSM document ``/starburst/<deployment>/config`` with exactly the keys of the
SDK's ``REQUIRED`` + ``OPTIONAL``. It will be swapped for ``starburst_local.provision``
(a Terraform apply) with the same signature.
"""

from __future__ import annotations

import contextlib
import json
import logging
from typing import Any

import boto3
from starburst_sdk._config import CONFIG_VERSION, OPTIONAL, REQUIRED, parameter_name

log = logging.getLogger("starburst.local")

ENDPOINT_KEYS = {
    "s3": "AWS_ENDPOINT_URL_S3", "sqs": "AWS_ENDPOINT_URL_SQS",
    "iam": "AWS_ENDPOINT_URL_IAM", "logs": "AWS_ENDPOINT_URL_CLOUDWATCH_LOGS",
    "ssm": "AWS_ENDPOINT_URL_SSM", "sts": "AWS_ENDPOINT_URL_STS",
    "ecs": "AWS_ENDPOINT_URL_ECS", "ecr": "AWS_ENDPOINT_URL_ECR",
    "ec2": "AWS_ENDPOINT_URL_EC2", "service-quotas": "AWS_ENDPOINT_URL_SERVICE_QUOTAS",
}
ECS_TRUST = json.dumps({"Version": "2012-10-17", "Statement": [{
    "Effect": "Allow", "Principal": {"Service": "ecs-tasks.amazonaws.com"},
    "Action": "sts:AssumeRole"}]})
EXECUTION_POLICY = ("arn:aws:iam::aws:policy/service-role/"
                    "AmazonECSTaskExecutionRolePolicy")


def client(env: dict[str, str], service: str) -> Any:
    """A boto3 client for ``service`` configured only from ``env`` (not os.environ)."""
    return boto3.client(
        service, endpoint_url=env[ENDPOINT_KEYS[service]],
        region_name=env["AWS_DEFAULT_REGION"],
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
    )


def _role(iam: Any, name: str) -> str:
    try:
        return iam.create_role(RoleName=name, AssumeRolePolicyDocument=ECS_TRUST)["Role"]["Arn"]
    except iam.exceptions.EntityAlreadyExistsException:
        return iam.get_role(RoleName=name)["Role"]["Arn"]


def _bucket(s3: Any, name: str) -> None:
    with contextlib.suppress(s3.exceptions.BucketAlreadyOwnedByYou, s3.exceptions.BucketAlreadyExists):
        s3.create_bucket(Bucket=name)


def _log_group(logs: Any, name: str) -> None:
    with contextlib.suppress(logs.exceptions.ResourceAlreadyExistsException):
        logs.create_log_group(logGroupName=name)


def _repository(ecr: Any, name: str) -> str:
    try:
        repo = ecr.create_repository(repositoryName=name)["repository"]
    except ecr.exceptions.RepositoryAlreadyExistsException:
        repo = ecr.describe_repositories(repositoryNames=[name])["repositories"][0]
    return repo["repositoryUri"]


def _cluster(ecs: Any, name: str) -> str:
    return ecs.create_cluster(
        clusterName=name, capacityProviders=["FARGATE", "FARGATE_SPOT"],
        defaultCapacityProviderStrategy=[{"capacityProvider": "FARGATE", "weight": 1}],
    )["cluster"]["clusterName"]


def _network(ec2: Any, name: str) -> tuple[str, str]:
    """(subnet id, security group id), tagged ``Name=<name>``, created once."""
    tag = [{"Name": "tag:Name", "Values": [name]}]
    vpcs = ec2.describe_vpcs(Filters=tag)["Vpcs"]
    if vpcs:
        vpc = vpcs[0]["VpcId"]
    else:
        vpc = ec2.create_vpc(CidrBlock="10.42.0.0/16", TagSpecifications=[{
            "ResourceType": "vpc", "Tags": [{"Key": "Name", "Value": name}]}])["Vpc"]["VpcId"]
        ec2.modify_vpc_attribute(VpcId=vpc, EnableDnsHostnames={"Value": True})
    by_vpc = [{"Name": "vpc-id", "Values": [vpc]}]
    subnets = ec2.describe_subnets(Filters=by_vpc + tag)["Subnets"]
    subnet = subnets[0]["SubnetId"] if subnets else ec2.create_subnet(
        VpcId=vpc, CidrBlock="10.42.1.0/24", TagSpecifications=[{
            "ResourceType": "subnet", "Tags": [{"Key": "Name", "Value": name}]}],
    )["Subnet"]["SubnetId"]
    groups = ec2.describe_security_groups(
        Filters=by_vpc + [{"Name": "group-name", "Values": [name]}])["SecurityGroups"]
    group = groups[0]["GroupId"] if groups else ec2.create_security_group(
        GroupName=name, Description="starburst workers (egress only)", VpcId=vpc)["GroupId"]
    return subnet, group


def bootstrap(env: dict[str, str], deployment: str) -> dict[str, Any]:
    """Create the deployment's resources on the local cloud; return the config document."""
    name = f"starburst-{deployment}"
    region = env["AWS_DEFAULT_REGION"]
    iam = client(env, "iam")
    bucket = f"{name}-000000000000-{region}"
    _bucket(client(env, "s3"), bucket)
    execution_role = _role(iam, f"{name}-execution")
    iam.attach_role_policy(RoleName=f"{name}-execution", PolicyArn=EXECUTION_POLICY)
    task_role = _role(iam, f"{name}-task")
    log_group = f"/starburst/{deployment}"
    _log_group(client(env, "logs"), log_group)
    repo_url = _repository(client(env, "ecr"), f"{name}-worker")
    cluster = _cluster(client(env, "ecs"), name)
    subnet, group = _network(client(env, "ec2"), name)
    doc: dict[str, Any] = {
        "version": CONFIG_VERSION, "deployment": deployment, "region": region,
        "bucket": bucket, "prefix": "starburst/", "cluster": cluster,
        "subnets": [subnet], "security_groups": [group], "assign_public_ip": False,
        "execution_role_arn": execution_role, "task_role_arn": task_role,
        "log_group": log_group, "ecr_repository_url": repo_url,
        "queue_prefix": name, "worker_image": f"{repo_url}:local",
    }
    assert set(doc) == set(REQUIRED) | set(OPTIONAL), "config keys drifted from the SDK"
    client(env, "ssm").put_parameter(Name=parameter_name(deployment), Value=json.dumps(doc),
                                     Type="String", Overwrite=True)
    log.info("deployment %r provisioned on the local cloud", deployment)
    return doc
