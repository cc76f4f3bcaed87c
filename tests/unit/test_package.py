"""``make package``'s output: a template cfn-lint accepts, a table that keeps its guarantees,
backups, alarms, and IAM policies scoped to the stack's own resources.

The dev stage is packaged once per module with the same function ``make package`` runs
(``infra.package.package``: ``chalice package --merge-template``), from a copy of the app without
requirements.txt so that Chalice downloads no wheels (the template is the same; the zip holds the
app's code only); the prod stage's merge template is checked without packaging.

What the scope check leaves out, on purpose: the KMS key policy, a resource policy that must say
``"Resource": "*"`` (in a key policy it means "this key"); the AWS Backup service role, which
uses AWS's managed backup/restore policies (AWS Backup's documented role, no inline statement).
Wildcards that remain are suffixes of the stack's own ARNs: ``<table>/index/*``,
``<table>/backup/*``, the drill's ``ledger-<stage>*-drill-*`` scratch tables and the secret's
random ``-??????`` suffix. Logs are scoped to each function's own log group.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from infra import package

ROOT = Path(__file__).resolve().parents[2]
CFN_LINT = Path(sys.executable).with_name("cfn-lint")
SECRET_VARIABLES = {
    "JWT_SIGNING_KEYS",
    "STRIPE_API_KEY",
    "STRIPE_WEBHOOK_SECRET",
    "CRYPTO_WEBHOOK_SECRET",
    "CRYPTO_ADDRESS_SECRET",
}
TABLE_ARN = json.dumps(package.ACTIVE_TABLE_ARN)  # the stack's table, or the restored one


@pytest.fixture(scope="module")
def packaged(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # code_only: no requirements, so chalice fetches no wheels; PIP_NO_INDEX would make any
    # attempt fail. Nothing leaves the machine.
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PIP_NO_INDEX", "1")
        patch.delenv("AWS_DEFAULT_REGION", raising=False)  # package() sets it for chalice
        return package.package("dev", tmp_path_factory.mktemp("build") / "dev", code_only=True)


@pytest.fixture(scope="module")
def template(packaged: Path) -> dict[str, Any]:
    return json.loads(packaged.read_text())


def resources(template: dict[str, Any], type_: str) -> dict[str, dict[str, Any]]:
    return {n: r for n, r in template["Resources"].items() if r["Type"] == type_}


def role_statements(template: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every statement of every IAM role's inline policies and of every IAM policy resource."""
    for name, role in resources(template, "AWS::IAM::Role").items():
        for policy in role["Properties"].get("Policies", []):
            for statement in policy["PolicyDocument"]["Statement"]:
                yield name, statement
    for name, policy in resources(template, "AWS::IAM::Policy").items():
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
            yield name, statement


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def test_the_packaged_template_passes_cfn_lint(packaged: Path):
    result = subprocess.run(
        [str(CFN_LINT), str(packaged)], capture_output=True, text=True, timeout=300, check=False
    )

    assert result.returncode == 0, result.stdout + result.stderr
    with zipfile.ZipFile(packaged.parent / "deployment.zip") as code:
        names = set(code.namelist())
    assert {"app.py", "chalicelib/services/restore_drill.py"} <= names


def test_the_table_is_infra_table_json_unchanged(template):
    source = json.loads((ROOT / "infra" / "table.json").read_text())

    assert template["Resources"]["LedgerTable"] == source["Resources"]["LedgerTable"]
    assert template["Resources"]["LedgerKey"] == source["Resources"]["LedgerKey"]
    assert template["Parameters"]["Stage"]["Default"] == "dev"


def test_the_table_is_recoverable_protected_encrypted_and_expires_items(template):
    table = template["Resources"]["LedgerTable"]
    properties = table["Properties"]

    assert properties["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
    assert properties["DeletionProtectionEnabled"] is True
    assert properties["SSESpecification"] == {
        "SSEEnabled": True,
        "SSEType": "KMS",
        "KMSMasterKeyId": {"Ref": "LedgerKey"},
    }
    assert properties["TimeToLiveSpecification"] == {"AttributeName": "expires_at", "Enabled": True}
    assert {index["IndexName"] for index in properties["GlobalSecondaryIndexes"]} == {
        "GSI1",
        "GSI2",
    }
    assert table["DeletionPolicy"] == "Retain"


def test_aws_backup_keeps_a_daily_backup_of_the_table_for_35_days(template):
    (plan,) = resources(template, "AWS::Backup::BackupPlan").values()
    (rule,) = plan["Properties"]["BackupPlan"]["BackupPlanRule"]
    (selection,) = resources(template, "AWS::Backup::BackupSelection").values()

    assert rule["Lifecycle"] == {"DeleteAfterDays": 35}
    minute, hour, day_of_month, month, day_of_week, year = (
        re.fullmatch(r"cron\((.*)\)", rule["ScheduleExpression"]).group(1).split()
    )
    assert (day_of_month, month, day_of_week, year) == ("*", "*", "?", "*")  # every day
    assert minute.isdigit()
    assert hour.isdigit()
    assert selection["Properties"]["BackupSelection"]["Resources"] == [package.ACTIVE_TABLE_ARN]


def test_alarms_watch_reconciliation_errors_and_throttles_and_page_the_topic(template):
    alarms = resources(template, "AWS::CloudWatch::Alarm")
    metrics = {
        (a["Properties"]["Namespace"], a["Properties"]["MetricName"]) for a in alarms.values()
    }
    functions = resources(template, "AWS::Serverless::Function")
    errors_watched = {
        a["Properties"]["Dimensions"][0]["Value"]["Ref"]
        for a in alarms.values()
        if a["Properties"]["MetricName"] == "Errors"
    }

    assert ("Ledger", "ReconciliationMismatch") in metrics
    assert ("Ledger", "RestoreDrillFailed") in metrics
    assert {
        ("AWS/DynamoDB", "ReadThrottleEvents"),
        ("AWS/DynamoDB", "WriteThrottleEvents"),
    } <= metrics
    assert errors_watched == set(functions)  # every function, including later schedules
    for alarm in alarms.values():
        assert alarm["Properties"]["AlarmActions"] == [{"Ref": "AlertTopic"}]
    assert resources(template, "AWS::SNS::Topic").keys() == {"AlertTopic"}


def test_every_function_has_its_own_role_and_learns_the_stack_by_reference(template):
    functions = resources(template, "AWS::Serverless::Function")
    roles = {f["Properties"]["Role"]["Fn::GetAtt"][0] for f in functions.values()}

    assert len(roles) == len(functions)
    for function in functions.values():
        variables = function["Properties"]["Environment"]["Variables"]
        assert variables["TABLE_NAME"] == package.ACTIVE_TABLE_NAME
        assert variables["ALERT_TOPIC_ARN"] == {"Ref": "AlertTopic"}
        assert "SECRETS_ID" in variables
        assert not SECRET_VARIABLES & variables.keys()  # secrets never in the environment


def test_every_role_statement_is_scoped_to_the_stacks_resources(template):
    for role, statement in role_statements(template):
        actions = as_list(statement["Action"])
        assert statement["Effect"] == "Allow", (role, statement)
        assert all(action != "*" and not action.endswith(":*") for action in actions), role
        for resource in as_list(statement["Resource"]):
            text = json.dumps(resource)
            assert resource != "*", (role, statement)
            assert not text.startswith('"arn:*'), (role, statement)
            # a resource of this stack (GetAtt, Ref, ${X.Arn}) or named in this account
            names_ours = ("Fn::GetAtt", '"Ref"', ".Arn}", "${AWS::AccountId}")
            assert any(mark in text for mark in names_ours), (role, statement)


def test_only_the_managed_backup_role_uses_aws_managed_policies(template):
    for name, role in resources(template, "AWS::IAM::Role").items():
        if role["Properties"].get("ManagedPolicyArns"):
            assert name == "BackupRole"


def dynamodb_grants(template: dict[str, Any], role: str) -> dict[str, list[str]]:
    """action -> the resources (as JSON text) the role's statements grant it on."""
    grants: dict[str, list[str]] = {}
    for name, statement in role_statements(template):
        if name not in (role, f"{role}LogsPolicy"):
            continue
        for action in as_list(statement["Action"]):
            if action.startswith("dynamodb:"):
                grants.setdefault(action, []).extend(
                    json.dumps(r) for r in as_list(statement["Resource"])
                )
    return grants


def test_the_api_may_only_read_and_write_items_of_the_table_and_its_indexes(template):
    grants = dynamodb_grants(template, "ApiHandlerRole")

    assert set(grants) == {
        "dynamodb:GetItem",
        "dynamodb:BatchGetItem",
        "dynamodb:Query",
        "dynamodb:PutItem",
        "dynamodb:UpdateItem",
        "dynamodb:DeleteItem",
        "dynamodb:BatchWriteItem",
        "dynamodb:ConditionCheckItem",
        "dynamodb:DescribeTable",
        "dynamodb:Scan",
    }
    indexes = json.dumps(
        {"Fn::Sub": ["${ActiveTableArn}/index/*", {"ActiveTableArn": package.ACTIVE_TABLE_ARN}]}
    )
    assert grants.pop("dynamodb:Scan") == [indexes]  # never the base table: entries live there
    # Deletes only on the table, and (below) only on volatile keys: immutable history stays so.
    assert grants.pop("dynamodb:DeleteItem") == [TABLE_ARN]
    assert grants.pop("dynamodb:BatchWriteItem") == [TABLE_ARN]
    for resources_ in grants.values():
        assert resources_ == [TABLE_ARN, indexes]


def test_the_api_may_delete_only_replay_records_throttles_and_checkpoints(template):
    statements = [s for name, s in role_statements(template) if name == "ApiHandlerRole"]
    deleting = [s for s in statements if "dynamodb:DeleteItem" in as_list(s["Action"])]
    assert len(deleting) == 1
    [statement] = deleting
    assert set(as_list(statement["Action"])) == {"dynamodb:DeleteItem", "dynamodb:BatchWriteItem"}
    leading = statement["Condition"]["ForAllValues:StringLike"]["dynamodb:LeadingKeys"]
    assert sorted(leading) == ["CKPT#*", "IDEM#*", "THROTTLE#*"]


def test_only_the_drill_may_back_up_restore_or_delete_and_only_scratch_tables(template):
    # Only tables named after the active table (<table>-drill-<id>), not any "ledger-<stage>*".
    scratch = json.dumps(
        {"Fn::Sub": ["${ActiveTableArn}-drill-*", {"ActiveTableArn": package.ACTIVE_TABLE_ARN}]}
    )
    drill = dynamodb_grants(template, "RestoreDrillRole")
    others = [
        dynamodb_grants(template, name)
        for name in resources(template, "AWS::IAM::Role")
        if name not in ("RestoreDrillRole", "BackupRole")
    ]

    assert drill["dynamodb:DeleteTable"] == [scratch]
    assert drill["dynamodb:CreateBackup"] == [TABLE_ARN]
    assert scratch in drill["dynamodb:RestoreTableFromBackup"]
    for grants in others:
        assert not {"dynamodb:DeleteTable", "dynamodb:CreateBackup"} & set(grants)
        assert TABLE_ARN not in grants.get("dynamodb:Scan", [])
        assert not any("RestoreTable" in action for action in grants)


def test_the_drill_runs_weekly_with_the_longest_lambda_timeout(template):
    function = template["Resources"]["RestoreDrill"]["Properties"]

    assert function["Timeout"] == 900
    assert function["Events"]["RestoreDrillEvent"]["Properties"]["Schedule"] == (
        "cron(0 3 ? * SUN *)"
    )


def test_every_scheduled_function_of_the_app_is_in_the_template(template):
    import app as chalice_app

    scheduled = {s.name for s in chalice_app.app.event_sources if hasattr(s, "schedule_expression")}
    functions = resources(template, "AWS::Serverless::Function")
    with_schedule = {
        name
        for name, f in functions.items()
        if any(e["Type"] == "Schedule" for e in f["Properties"].get("Events", {}).values())
    }

    assert {package.cfn_name(name) for name in scheduled} == with_schedule


def test_stage_settings_turn_chalices_generated_policy_off():
    config = json.loads((ROOT / ".chalice" / "config.json").read_text())

    for stage in package.STAGES:
        assert config["stages"][stage]["autogen_policy"] is False
        assert config["stages"][stage]["environment_variables"]["STAGE"] == stage


def test_the_prod_merge_template_defaults_to_prod():
    merge = package.merge_template("prod")

    assert merge["Parameters"]["Stage"]["Default"] == "prod"
    assert "RestoreDrillErrorsAlarm" in merge["Resources"]
    with pytest.raises(SystemExit):
        package.merge_template("staging")


def test_after_a_restore_one_parameter_moves_functions_iam_backups_and_alarms(template):
    """``ActiveTableName`` (docs/runbooks/restore.md, "Cut-over"): outside the table's own
    definition, LedgerTable is named only through the active-table switch."""
    own = {"LedgerTable", "LedgerKey", "LedgerKeyAlias"}
    text = json.dumps({n: r for n, r in template["Resources"].items() if n not in own})
    switched = text.count(json.dumps(package.ACTIVE_TABLE_ARN))
    switched += text.count(json.dumps(package.ACTIVE_TABLE_NAME))
    for switch in (package.ACTIVE_TABLE_ARN, package.ACTIVE_TABLE_NAME):
        text = text.replace(json.dumps(switch), "")

    assert template["Parameters"]["ActiveTableName"]["Default"] == ""
    assert switched > 10  # environment, policies, backup selection, alarms
    assert "LedgerTable" not in text


def test_the_nightly_reconciliation_runs_at_two_with_time_for_a_busy_day(template):
    function = template["Resources"]["NightlyReconciliation"]["Properties"]
    (event,) = function["Events"].values()

    assert event["Properties"]["Schedule"] == "cron(0 2 * * ? *)"
    assert function["Timeout"] == 900  # a scheduled job is not bound by API Gateway's 29 s


def granted_actions(template: dict[str, Any], role: str) -> set[str]:
    return {
        action
        for name, statement in role_statements(template)
        if name in (role, f"{role}LogsPolicy")
        for action in as_list(statement["Action"])
    }


def test_each_scheduled_function_gets_only_what_it_uses(template):
    """Not the API's whole profile (IAM finding of the hardening issue): only the mail sender
    sends mail, only it deletes outbox items; the audit sealer touches audit partitions only;
    the payout and refund jobs neither scan, delete nor mail (only the payout job alerts)."""
    for role in ("ApiHandlerRole", "RetryPayoutsRole", "FinishRefundsRole", "SealAuditDaysRole"):
        assert "ses:SendEmail" not in granted_actions(template, role), role
    assert "ses:SendEmail" in granted_actions(template, "DeliverMailRole")
    for role in ("RetryPayoutsRole", "FinishRefundsRole"):
        actions = granted_actions(template, role)
        assert not {"dynamodb:Scan", "dynamodb:DeleteItem"} & actions, role
        assert "secretsmanager:GetSecretValue" in actions
    assert "sns:Publish" in granted_actions(template, "RetryPayoutsRole")  # a payout given up
    assert "sns:Publish" not in granted_actions(template, "FinishRefundsRole")
    mail = [s for name, s in role_statements(template) if name == "DeliverMailRole"]
    [deleting] = [s for s in mail if "dynamodb:DeleteItem" in as_list(s["Action"])]
    assert deleting["Condition"]["ForAllValues:StringLike"]["dynamodb:LeadingKeys"] == ["OUTBOX#*"]
    sealer = [s for name, s in role_statements(template) if name == "SealAuditDaysRole"]
    table = [s for s in sealer if any(a.startswith("dynamodb:") for a in as_list(s["Action"]))]
    assert [s["Condition"]["ForAllValues:StringLike"]["dynamodb:LeadingKeys"] for s in table] == [
        ["AUDIT#*", "AUDITDIGEST#*"]
    ]
    assert not {"secretsmanager:GetSecretValue", "sns:Publish"} & granted_actions(
        template, "SealAuditDaysRole"
    )


def test_a_function_without_a_policy_in_iam_json_fails_the_packaging():
    with pytest.raises(SystemExit, match="no policy for the function 'new_job'"):
        package.function_policy({"Statements": {}, "Functions": {}}, "new_job")


def test_asynchronous_failures_are_retried_boundedly_then_queued_and_alarmed(template):
    functions = resources(template, "AWS::Serverless::Function") or resources(
        template, "AWS::Lambda::Function"
    )
    configs = {
        c["Properties"]["FunctionName"]["Ref"]: c["Properties"]
        for c in resources(template, "AWS::Lambda::EventInvokeConfig").values()
    }
    assert set(configs) == set(functions) - {"APIHandler"}
    for config in configs.values():
        assert config["DestinationConfig"]["OnFailure"]["Destination"] == {
            "Fn::GetAtt": ["FailedInvocations", "Arn"]
        }
    # A drill retried would run three full backup/restore cycles; an admin restarts a run.
    assert configs["RestoreDrill"]["MaximumRetryAttempts"] == 0
    assert configs["ReconciliationRun"]["MaximumRetryAttempts"] == 0
    assert configs["NightlyReconciliation"]["MaximumRetryAttempts"] == 2
    alarm = template["Resources"]["FailedInvocationsAlarm"]["Properties"]
    assert alarm["AlarmActions"] == [{"Ref": "AlertTopic"}]
    senders = {
        name
        for name, statement in role_statements(template)
        if "sqs:SendMessage" in as_list(statement["Action"])
    }
    assert "ApiHandlerRole" not in senders


def test_the_alert_topic_key_lets_alarms_and_backup_publish(template):
    topic = template["Resources"]["AlertTopic"]["Properties"]
    assert topic["KmsMasterKeyId"] == {"Ref": "AlertKey"}  # not aws/sns: alarms could not use it
    key = template["Resources"]["AlertKey"]["Properties"]
    assert key["EnableKeyRotation"] is True
    services = {
        service
        for statement in key["KeyPolicy"]["Statement"]
        for service in as_list(statement["Principal"].get("Service", []))
    }
    assert services == {"cloudwatch.amazonaws.com", "backup.amazonaws.com"}
    policy = template["Resources"]["AlertTopicPolicy"]["Properties"]["PolicyDocument"]
    publishers = {s["Principal"]["Service"] for s in policy["Statement"]}
    assert publishers == {"cloudwatch.amazonaws.com", "backup.amazonaws.com"}


def test_the_money_checking_jobs_have_reserved_concurrency(template):
    """The API can use every unreserved slot of the account; the drill and the reconciliations
    keep their own (one run of each at a time; two admin runs)."""
    functions = resources(template, "AWS::Serverless::Function") or resources(
        template, "AWS::Lambda::Function"
    )
    reserved = {
        name: f["Properties"]["ReservedConcurrentExecutions"]
        for name, f in functions.items()
        if "ReservedConcurrentExecutions" in f["Properties"]
    }
    assert reserved == {"RestoreDrill": 1, "NightlyReconciliation": 1, "ReconciliationRun": 2}
