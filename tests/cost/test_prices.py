"""The Fargate price table: shipped data, lookups, and refresh from the Pricing API."""

import json

import boto3
import pytest
from botocore.stub import Stubber

from starburst_sdk import _cost


def test_prices_bundled_table_has_source_date_and_main_regions():
    doc = _cost.load_prices()
    _cost.check_prices(doc)
    assert doc["source"] and doc["as_of"]
    for region in (
        "us-east-1",
        "us-west-2",
        "eu-west-1",
        "eu-central-1",
        "ap-southeast-1",
        "ap-northeast-1",
    ):
        assert region in doc["regions"]


def test_prices_rate_us_east_1_on_demand_spot_and_arm():
    assert _cost.rate("us-east-1") == _cost.Rate(0.04048, 0.004445, 0.000111)
    arm = _cost.rate("us-east-1", arch="arm64")
    assert (arm.vcpu_hour, arm.gb_hour) == (0.03238, 0.00356)
    spot = _cost.rate("us-east-1", spot=True)
    assert spot.vcpu_hour < 0.5 * 0.04048 and spot.gb_hour < 0.5 * 0.004445


def test_prices_unknown_region_is_an_error_naming_known_ones():
    with pytest.raises(ValueError, match="mars-north-1.*us-east-1") as info:
        _cost.rate("mars-north-1")
    assert "Run `starburst-cli prices refresh`" in str(info.value)


def test_prices_unknown_arch_is_an_error():
    with pytest.raises(ValueError, match="arch"):
        _cost.rate("us-east-1", arch="riscv")


def test_prices_storage_above_the_free_20_gb_is_billed():
    r = _cost.Rate(0.0, 0.0, 0.000111)
    assert r.per_second(1, 2, 20) == 0
    assert r.per_second(1, 2, 30) == pytest.approx(10 * 0.000111 / 3600)


def test_prices_written_table_takes_precedence(tmp_path, monkeypatch):
    doc = _cost.load_prices()
    doc = json.loads(json.dumps(doc))
    doc["regions"] = {"us-east-1": doc["regions"]["us-east-1"]}
    doc["regions"]["us-east-1"]["on_demand"]["x86_64"]["vcpu_hour"] = 1.0
    monkeypatch.setenv(_cost.PRICES_ENV, str(tmp_path / "prices.json"))
    assert _cost.write_prices(doc) == tmp_path / "prices.json"
    assert _cost.rate("us-east-1").vcpu_hour == 1.0
    with pytest.raises(ValueError, match="knows: us-east-1$|knows: us-east-1\\."):
        _cost.rate("eu-west-1")


def _product(region, usage, usd):
    return json.dumps(
        {
            "product": {
                "productFamily": "Compute",
                "attributes": {
                    "regionCode": region,
                    "usagetype": usage,
                    "servicecode": "AmazonECS",
                },
            },
            "terms": {
                "OnDemand": {
                    "T1": {
                        "priceDimensions": {
                            "T1.D1": {
                                "unit": "hours",
                                "pricePerUnit": {"USD": str(usd)},
                            }
                        }
                    }
                }
            },
        }
    )


USAGE = {
    ("on_demand", "x86_64", "vcpu_hour"): ("USE1-Fargate-vCPU-Hours:perCPU", 0.04048),
    ("on_demand", "x86_64", "gb_hour"): ("USE1-Fargate-GB-Hours", 0.004445),
    ("on_demand", "arm64", "vcpu_hour"): (
        "USE1-Fargate-ARM-vCPU-Hours:perCPU",
        0.03238,
    ),
    ("on_demand", "arm64", "gb_hour"): ("USE1-Fargate-ARM-GB-Hours", 0.00356),
    ("spot", "x86_64", "vcpu_hour"): ("USE1-SpotUsage-vCPU-Hours:perCPU", 0.0121),
    ("spot", "x86_64", "gb_hour"): ("USE1-SpotUsage-GB-Hours", 0.0013),
    ("spot", "arm64", "vcpu_hour"): ("USE1-SpotUsage-ARM-vCPU-Hours:perCPU", 0.0097),
    ("spot", "arm64", "gb_hour"): ("USE1-SpotUsage-ARM-GB-Hours", 0.0011),
}


def test_prices_refresh_from_the_pricing_api(aws_env):
    pricing = boto3.client("pricing", region_name="us-east-1")
    page1 = [_product("us-east-1", u, p) for u, p in list(USAGE.values())[:5]]
    page2 = [_product("us-east-1", u, p) for u, p in list(USAGE.values())[5:]]
    page2 += [
        _product("us-east-1", "USE1-Fargate-EphemeralStorage-GB-Hours", 0.000111),
        _product("us-east-1", "USE1-Fargate-Windows-vCPU-Hours:perCPU", 0.09),
        _product("eu-west-3", "EUW3-Fargate-vCPU-Hours:perCPU", 0.05),  # incomplete
    ]
    expected = {
        "ServiceCode": "AmazonECS",
        "FormatVersion": "aws_v1",
        "MaxResults": 100,
        "Filters": [
            {"Type": "TERM_MATCH", "Field": "productFamily", "Value": "Compute"}
        ],
    }
    with Stubber(pricing) as stub:
        stub.add_response(
            "get_products",
            {"PriceList": page1, "NextToken": "p2", "FormatVersion": "aws_v1"},
            expected,
        )
        stub.add_response(
            "get_products",
            {"PriceList": page2, "FormatVersion": "aws_v1"},
            {**expected, "NextToken": "p2"},
        )
        doc = _cost.refresh_prices(pricing)
        stub.assert_no_pending_responses()
    _cost.check_prices(doc)
    assert list(doc["regions"]) == ["us-east-1"]
    entry = doc["regions"]["us-east-1"]
    for (market, arch, dim), (_, usd) in USAGE.items():
        assert entry[market][arch][dim] == usd
    assert entry["storage_gb_hour"] == 0.000111
    assert _cost.rate("us-east-1", spot=True, arch="arm64", prices=doc) == _cost.Rate(
        0.0097, 0.0011, 0.000111
    )
    assert doc["source"].startswith("AWS Pricing API") and doc["as_of"]


def test_prices_refresh_with_nothing_usable_is_an_error(aws_env):
    pricing = boto3.client("pricing", region_name="us-east-1")
    with Stubber(pricing) as stub:
        stub.add_response("get_products", {"PriceList": [], "FormatVersion": "aws_v1"})
        with pytest.raises(ValueError, match="no complete"):
            _cost.refresh_prices(pricing)
