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
import os
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
TABLE_ARN = json.dumps(package.ACTIVE_TABLE_ARN)
CHECKOV_OPTIONS = ("--compact", "--quiet", "--skip-download")
NO_RESOURCE_LEVEL = {
    "backup:ListRecoveryPointsByResource",
    "backup:DescribeRestoreJob",
}  # the stack's table, or the restored one


@pytest.fixture(scope="module")
def packaged(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # code_only: no requirements, so chalice fetches no wheels; PIP_NO_INDEX would make any
    # attempt fail. Nothing leaves the machine.
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PIP_NO_INDEX", "1")
        patch.delenv("AWS_DEFAULT_REGION", raising=False)  # package() sets it for chalice
        return package.package("dev", tmp_path_factory.mktemp("build") / "dev", code_only=True)


@pytest.fixture(scope="module")
def prod_packaged(tmp_path_factory: pytest.TempPathFactory) -> Path:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PIP_NO_INDEX", "1")
        return package.package("prod", tmp_path_factory.mktemp("build") / "prod", code_only=True)


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
    console = {f"chalicelib/console/{p.name}" for p in (ROOT / "chalicelib" / "console").iterdir()}
    assert {"chalicelib/console/index.html", "chalicelib/console/app.js"} <= console <= names


def checkov(path: Path) -> subprocess.CompletedProcess[str]:
    """The pinned checkov (``make test`` installs it in .venv/checkov and names it in
    LEDGER_CHECKOV), offline: no guideline download, no version check."""
    command = os.environ.get("LEDGER_CHECKOV")
    if not command:
        pytest.skip("LEDGER_CHECKOV is not set: `make test` installs and names checkov")
    env = {**os.environ, "BC_SKIP_MAPPING": "TRUE", "CKV_SKIP_PACKAGE_UPDATE_CHECK": "true"}
    return subprocess.run(
        [command, "-f", str(path), "--framework", "cloudformation", *CHECKOV_OPTIONS],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
        check=False,
    )


def test_the_prod_stage_packages_lints_and_passes_checkov_with_its_own_defaults(prod_packaged):
    result = subprocess.run(
        [str(CFN_LINT), str(prod_packaged)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    prod = json.loads(prod_packaged.read_text())
    defaults = {name: p.get("Default") for name, p in prod["Parameters"].items()}
    assert defaults["Stage"] == "prod"
    assert {k: defaults[k] for k in package.STAGE_DEFAULTS["prod"]} == package.STAGE_DEFAULTS[
        "prod"
    ]
    handler = prod["Resources"]["APIHandler"]["Properties"]
    assert handler["ReservedConcurrentExecutions"] == 300
    assert handler["Environment"]["Variables"]["STAGE"] == "prod"
    result = checkov(prod_packaged)
    assert result.returncode == 0, result.stdout + result.stderr


def test_checkov_passes_on_the_packaged_template_and_the_copy_vault(packaged: Path):
    """Every suppression is on its resource with its reason (docs/deploy.md, "Static checks")."""
    for path in (packaged, ROOT / "infra" / "backup-copy-vault.json"):
        result = checkov(path)

        assert result.returncode == 0, result.stdout + result.stderr


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
    # kept if the stack is deleted; removed when the stack's first creation fails and rolls back,
    # so that the named table does not block the next attempt
    assert table["DeletionPolicy"] == "RetainExceptOnCreate"
    assert table["UpdateReplacePolicy"] == "Retain"


def test_aws_backup_keeps_daily_and_monthly_recovery_points_in_a_locked_vault(template):
    (plan,) = resources(template, "AWS::Backup::BackupPlan").values()
    daily, monthly = plan["Properties"]["BackupPlan"]["BackupPlanRule"]
    (selection,) = resources(template, "AWS::Backup::BackupSelection").values()
    parameters = template["Parameters"]

    assert daily["Lifecycle"] == {"DeleteAfterDays": {"Ref": "DailyRetentionDays"}}
    assert monthly["Lifecycle"] == {"DeleteAfterDays": {"Ref": "MonthlyRetentionDays"}}
    assert parameters["DailyRetentionDays"]["Default"] == 35
    assert parameters["MonthlyRetentionDays"]["Default"] == 2557  # 7 years
    for rule, days in ((daily, ("*", "*", "?", "*")), (monthly, ("1", "*", "?", "*"))):
        minute, hour, *when = (
            re.fullmatch(r"cron\((.*)\)", rule["ScheduleExpression"]).group(1).split()
        )
        assert tuple(when) == days  # every day; the first of every month
        assert minute.isdigit()
        assert hour.isdigit()
        # a copy of each recovery point in the second region, when one is given
        assert rule["CopyActions"]["Fn::If"][0] == "HasBackupCopy"
        (copy,) = rule["CopyActions"]["Fn::If"][1]
        assert "${BackupCopyRegion}" in copy["DestinationBackupVaultArn"]["Fn::Sub"]
        assert copy["Lifecycle"] == rule["Lifecycle"]
    assert selection["Properties"]["BackupSelection"]["Resources"] == [package.ACTIVE_TABLE_ARN]
    vault = template["Resources"]["BackupVault"]["Properties"]
    assert vault["EncryptionKeyArn"] == {"Fn::GetAtt": ["BackupKey", "Arn"]}
    assert template["Resources"]["BackupKey"]["Properties"]["EnableKeyRotation"] is True
    lock = vault["LockConfiguration"]
    # bounds of their own: under a compliance lock they can never change, the retentions can
    assert lock["MinRetentionDays"] == {"Ref": "VaultLockMinDays"}
    assert lock["MaxRetentionDays"] == {"Ref": "VaultLockMaxDays"}
    assert parameters["VaultLockMinDays"]["Default"] <= 35
    assert parameters["VaultLockMaxDays"]["Default"] >= 2557
    # compliance mode: a grace period, then immutable; governance: no ChangeableForDays
    assert lock["ChangeableForDays"] == {"Fn::If": ["ComplianceLock", 3, {"Ref": "AWS::NoValue"}]}
    assert parameters["VaultLockMode"]["Default"] == "governance"
    prod = package.merge_template("prod")["Parameters"]
    assert prod["VaultLockMode"]["Default"] == "compliance"


def test_the_copy_vault_template_passes_cfn_lint_and_is_locked_too():
    path = ROOT / "infra" / "backup-copy-vault.json"
    result = subprocess.run(
        [str(CFN_LINT), str(path)], capture_output=True, text=True, timeout=120, check=False
    )

    assert result.returncode == 0, result.stdout + result.stderr
    vault = json.loads(path.read_text())["Resources"]["CopyVault"]["Properties"]
    assert vault["BackupVaultName"] == {"Fn::Sub": "ledger-${Stage}-copy"}
    assert vault["EncryptionKeyArn"] == {"Fn::GetAtt": ["CopyKey", "Arn"]}
    assert "LockConfiguration" in vault


def test_alarms_watch_reconciliation_errors_and_throttles_and_page_the_topic(template):
    alarms = resources(template, "AWS::CloudWatch::Alarm")
    metrics = {
        (a["Properties"]["Namespace"], a["Properties"]["MetricName"])
        for a in alarms.values()
        if "MetricName" in a["Properties"]
    }
    functions = resources(template, "AWS::Serverless::Function")
    errors_watched = {
        a["Properties"]["Dimensions"][0]["Value"]["Ref"]
        for a in alarms.values()
        if a["Properties"].get("MetricName") == "Errors"
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
        assert alarm["Properties"]["OKActions"] == [{"Ref": "AlertTopic"}]
    assert resources(template, "AWS::SNS::Topic").keys() == {"AlertTopic"}


def app_functions(template: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The functions that run the app's code (all but API Gateway's facility key authorizer,
    which reads only the request's header and knows nothing of the stack)."""
    functions = resources(template, "AWS::Serverless::Function")
    return {name: f for name, f in functions.items() if name != "FacilityKeyAuthorizer"}


def test_every_function_has_its_own_role_and_learns_the_stack_by_reference(template):
    functions = resources(template, "AWS::Serverless::Function")
    roles = {f["Properties"]["Role"]["Fn::GetAtt"][0] for f in functions.values()}

    assert len(roles) == len(functions)
    for function in app_functions(template).values():
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
            if resource == "*" and role == "RestoreDrillRole":
                # AWS Backup takes no resource-level permission for these two (list and read)
                assert set(actions) == NO_RESOURCE_LEVEL, statement
                continue
            assert resource != "*", (role, statement)
            assert not text.startswith('"arn:*'), (role, statement)
            # a resource of this stack (GetAtt, Ref, ${X.Arn}) or named in this account (API
            # Gateway's ARNs name no account: keys by their random ids, the plan by the stack's)
            names_ours = ("Fn::GetAtt", '"Ref"', ".Arn}", "${AWS::AccountId}", "apigateway:")
            assert any(mark in text for mark in names_ours), (role, statement)


def test_only_the_service_roles_use_aws_managed_policies(template):
    """AWS Backup's documented role, and API Gateway's role for writing its logs."""
    for name, role in resources(template, "AWS::IAM::Role").items():
        if role["Properties"].get("ManagedPolicyArns"):
            assert name in ("BackupRole", "ApiGatewayCloudWatchRole")


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


def test_only_the_drill_may_restore_or_delete_tables_and_only_scratch_tables(template):
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
    # point in time: the source table and the scratch table; it makes and deletes no backup
    assert sorted(drill["dynamodb:RestoreTableToPointInTime"]) == sorted([TABLE_ARN, scratch])
    assert not {"dynamodb:CreateBackup", "dynamodb:DeleteBackup"} & set(drill)
    assert not any(action.endswith("FromBackup") for action in drill)
    for grants in others:
        assert not {"dynamodb:DeleteTable", "dynamodb:CreateBackup"} & set(grants)
        assert TABLE_ARN not in grants.get("dynamodb:Scan", [])
        assert not any("RestoreTable" in action for action in grants)


def test_the_drill_restores_recovery_points_only_through_the_backup_role(template):
    statements = [s for name, s in role_statements(template) if name == "RestoreDrillRole"]
    by_action = {action: s for s in statements for action in as_list(s["Action"])}

    start = by_action["backup:StartRestoreJob"]["Resource"]["Fn::Sub"]
    assert start.endswith(":${AWS::AccountId}:recovery-point:*")
    passing = by_action["iam:PassRole"]
    assert passing["Resource"] == {"Fn::GetAtt": ["BackupRole", "Arn"]}
    assert passing["Condition"] == {"StringEquals": {"iam:PassedToService": "backup.amazonaws.com"}}
    variables = template["Resources"]["RestoreDrill"]["Properties"]["Environment"]["Variables"]
    assert variables["BACKUP_VAULT_NAME"] == {"Ref": "BackupVault"}
    assert variables["BACKUP_RESTORE_ROLE_ARN"] == {"Fn::GetAtt": ["BackupRole", "Arn"]}
    for name, statement in role_statements(template):
        if name != "RestoreDrillRole":
            assert not any(a.startswith("backup:") for a in as_list(statement["Action"]))
            assert "iam:PassRole" not in as_list(statement["Action"])


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


def test_the_payroll_finisher_runs_every_five_minutes_with_table_items_only(template):
    """``finish_payrolls`` finishes crashed payout batches: it reads and writes table items (the
    money, the batches, their events) and nothing else; a failed run is retried twice, then
    queued and alarmed like every asynchronous function."""
    function = template["Resources"]["FinishPayrolls"]["Properties"]
    (event,) = function["Events"].values()
    assert event["Properties"]["Schedule"] == "rate(5 minutes)"
    assert function["ReservedConcurrentExecutions"] == 1  # two runs never overlap
    actions = granted_actions(template, "FinishPayrollsRole")
    assert {"dynamodb:Query", "dynamodb:BatchGetItem", "dynamodb:UpdateItem"} <= actions
    forbidden = {
        "dynamodb:Scan",
        "dynamodb:DeleteItem",
        "secretsmanager:GetSecretValue",
        "sns:Publish",
        "ses:SendEmail",
    }
    assert not forbidden & actions
    [config] = [
        c["Properties"]
        for c in resources(template, "AWS::Lambda::EventInvokeConfig").values()
        if c["Properties"]["FunctionName"]["Ref"] == "FinishPayrolls"
    ]
    assert config["MaximumRetryAttempts"] == 2
    assert "FinishPayrollsErrorsAlarm" in template["Resources"]


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
    assert set(configs) == set(functions) - {"APIHandler", "FacilityKeyAuthorizer"}
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
    assert services == {"cloudwatch.amazonaws.com", "backup.amazonaws.com", "events.amazonaws.com"}
    policy = template["Resources"]["AlertTopicPolicy"]["Properties"]["PolicyDocument"]
    publishers = {s["Principal"]["Service"] for s in policy["Statement"]}
    assert publishers == {
        "cloudwatch.amazonaws.com",
        "backup.amazonaws.com",
        "events.amazonaws.com",
    }


def test_every_function_has_reserved_concurrency(template):
    """The API's share is sized from DynamoDB (docs/deploy.md, "Sizing"); every scheduled job has
    its own, so a busy API can never keep the checks of the money (or the mail) from running, and
    no two runs of a job overlap (two admin reconciliation runs)."""
    functions = resources(template, "AWS::Serverless::Function")
    reserved = {
        name: f["Properties"].get("ReservedConcurrentExecutions") for name, f in functions.items()
    }

    assert reserved.pop("APIHandler") == 50  # dev; prod reserves 300
    assert reserved.pop("FacilityKeyAuthorizer") == 20
    assert reserved.pop("ReconciliationRun") == 2
    assert set(reserved.values()) == {1}
    config = json.loads((ROOT / ".chalice" / "config.json").read_text())
    assert config["stages"]["prod"]["lambda_functions"]["api_handler"] == {
        "reserved_concurrency": 300
    }


# -- the API stage --------------------------------------------------------------------------------
def test_gateway_responses_are_part_of_the_api_definition(template):
    """Inside the definition, a change to them changes the deployment: no manual redeploy."""
    definition = template["Resources"]["RestAPI"]["Properties"]["DefinitionBody"]
    source = json.loads((ROOT / "infra" / "api-gateway-responses.json").read_text())

    assert (
        definition["x-amazon-apigateway-gateway-responses"]
        == (source["x-amazon-apigateway-gateway-responses"])
    )
    assert not resources(template, "AWS::ApiGateway::GatewayResponse")


def test_the_stage_is_throttled_traced_and_access_logged_to_an_encrypted_group(template):
    api = template["Resources"]["RestAPI"]["Properties"]
    (settings,) = api["MethodSettings"]

    assert api["Name"] == {"Fn::Sub": "ledger-${Stage}"}  # the API metrics' ApiName
    assert settings["ThrottlingRateLimit"] == {"Ref": "ApiThrottleRate"}
    assert settings["ThrottlingBurstLimit"] == {"Ref": "ApiThrottleBurst"}
    assert settings["DataTraceEnabled"] is False  # bodies (passwords, tokens) are never logged
    assert api["TracingEnabled"] is True
    logs = api["AccessLogSetting"]
    assert logs["DestinationArn"] == {"Fn::GetAtt": ["ApiAccessLogs", "Arn"]}
    line = json.loads(logs["Format"])  # one JSON object per request
    assert {"requestId", "ip", "status", "resourcePath", "responseLatency"} <= set(line)
    group = template["Resources"]["ApiAccessLogs"]["Properties"]
    assert group["KmsKeyId"] == {"Fn::GetAtt": ["LogsKey", "Arn"]}
    assert group["RetentionInDays"] == {"Fn::If": ["IsProd", 365, 30]}
    # API Gateway needs the account's CloudWatch role before a stage can log
    assert template["Resources"]["RestAPI"]["DependsOn"] == ["ApiGatewayAccount"]
    prod = package.merge_template("prod")["Parameters"]
    assert prod["ApiThrottleRate"]["Default"] > template["Parameters"]["ApiThrottleRate"]["Default"]


def test_the_waf_has_managed_rules_and_a_rate_rule_and_is_on_by_default_in_prod(template):
    acl = template["Resources"]["WebAcl"]
    rules = {rule["Name"]: rule for rule in acl["Properties"]["Rules"]}

    assert acl["Condition"] == "UseWaf"
    assert template["Resources"]["WebAclAssociation"]["Condition"] == "UseWaf"
    assert rules["RatePerIp"]["Statement"]["RateBasedStatement"]["AggregateKeyType"] == "IP"
    assert {
        "AWSManagedRulesCommonRuleSet",
        "AWSManagedRulesKnownBadInputsRuleSet",
        "AWSManagedRulesAmazonIpReputationList",
    } <= set(rules)
    redacted = template["Resources"]["WafLogging"]["Properties"]["RedactedFields"]
    assert {"SingleHeader": {"Name": "authorization"}} in redacted
    assert template["Parameters"]["EnableWaf"]["Default"] == "false"
    assert package.merge_template("prod")["Parameters"]["EnableWaf"]["Default"] == "true"


def test_the_api_deploys_through_an_alias_with_a_canary_rolled_back_by_alarms(template):
    handler = template["Resources"]["APIHandler"]["Properties"]
    alias = {"Ref": "APIHandler.Alias"}

    assert handler["AutoPublishAlias"] == package.API_ALIAS
    assert handler["DeploymentPreference"] == {
        "Type": {"Ref": "DeploymentType"},
        "Alarms": [{"Ref": "Api5xxAlarm"}, {"Ref": "ApiNewCodeErrorsAlarm"}],
    }
    assert template["Parameters"]["DeploymentType"]["Default"] == "AllAtOnce"
    prod = package.merge_template("prod")["Parameters"]
    assert prod["DeploymentType"]["Default"] == "Canary10Percent10Minutes"
    # the rollback alarms can fire within the canary's 10 minutes: 2 of 3 one-minute periods
    alarms = template["Resources"]
    for name in package.ROLLBACK_ALARMS:
        properties = alarms[name]["Properties"]
        periods = [
            m["MetricStat"]["Period"] for m in properties.get("Metrics", []) if "MetricStat" in m
        ]
        assert set(periods or [properties["Period"]]) == {60}
        assert (properties["EvaluationPeriods"], properties["DatapointsToAlarm"]) == (3, 2)
    dimensions = alarms["ApiNewCodeErrorsAlarm"]["Properties"]["Dimensions"]
    assert {"Name": "Resource", "Value": {"Fn::Sub": "${APIHandler}:live"}} in dimensions
    # the API invokes the alias, so shifting the alias shifts the API's traffic
    integrations = [
        operation["x-amazon-apigateway-integration"]["uri"]
        for path in template["Resources"]["RestAPI"]["Properties"]["DefinitionBody"][
            "paths"
        ].values()
        for operation in path.values()
        if "x-amazon-apigateway-integration" in operation
    ]
    assert integrations
    for uri in integrations:
        assert uri["Fn::Sub"][1] == {"Handler": alias}
        assert "APIHandler.Arn" not in json.dumps(uri)
    permission = template["Resources"]["APIHandlerInvokePermission"]["Properties"]
    assert permission["FunctionName"] == alias


# -- alarms ---------------------------------------------------------------------------------------
def test_every_function_is_watched_for_throttles_and_running_close_to_its_timeout(template):
    functions = resources(template, "AWS::Serverless::Function")
    alarms = resources(template, "AWS::CloudWatch::Alarm")

    for name, function in functions.items():
        throttles = alarms[f"{name}ThrottlesAlarm"]["Properties"]
        assert throttles["MetricName"] == "Throttles"
        duration = alarms[f"{name}DurationAlarm"]["Properties"]
        assert duration["MetricName"] == "Duration"
        assert duration["Dimensions"] == [{"Name": "FunctionName", "Value": {"Ref": name}}]
        assert duration["Threshold"] == function["Properties"]["Timeout"] * 800  # 80%, in ms


def test_api_dynamodb_and_backup_failures_are_alarmed(template):
    alarms = resources(template, "AWS::CloudWatch::Alarm")
    five_xx = alarms["Api5xxAlarm"]["Properties"]
    metrics = {m["Id"]: m for m in five_xx["Metrics"]}

    assert metrics["errors"]["MetricStat"]["Metric"]["MetricName"] == "5XXError"
    assert metrics["rate"]["ReturnData"] is True
    latency = alarms["ApiLatencyAlarm"]["Properties"]
    assert (latency["MetricName"], latency["ExtendedStatistic"]) == ("Latency", "p99")
    for kind in ("Read", "Write"):
        gsi1 = alarms[f"UserIndex{kind}ThrottleAlarm"]["Properties"]
        assert {"Name": "GlobalSecondaryIndexName", "Value": "GSI1"} in gsi1["Dimensions"]
    system = alarms["TableSystemErrorsAlarm"]["Properties"]["Metrics"]
    operations = {
        d["Value"]
        for m in system
        if "MetricStat" in m
        for d in m["MetricStat"]["Metric"]["Dimensions"]
        if d["Name"] == "Operation"
    }
    assert operations == {
        "TransactWriteItems",
        "GetItem",
        "BatchGetItem",
        "Query",
        "PutItem",
        "UpdateItem",
        "DeleteItem",
        "BatchWriteItem",
        "Scan",
    }
    jobs = template["Resources"]["BackupJobFailedRule"]["Properties"]
    backup, copy = jobs["EventPattern"]["$or"]
    assert backup["detail-type"] == ["Backup Job State Change"]
    assert {"FAILED", "ABORTED", "EXPIRED"} <= set(backup["detail"]["state"])
    # this stack's jobs only (its selection's role), not every backup job of the account
    assert backup["detail"]["iamRoleArn"] == [{"Fn::GetAtt": ["BackupRole", "Arn"]}]
    assert copy["detail-type"] == ["Copy Job State Change"]
    restores = template["Resources"]["RestoreJobFailedRule"]["Properties"]
    # restore job events say "status" where backup and copy job events say "state"
    assert set(restores["EventPattern"]["detail"]["status"]) == {"FAILED", "ABORTED"}
    assert restores["Targets"][0]["InputTransformer"]["InputPathsMap"]["state"] == "$.detail.status"
    for rule in (jobs, restores):
        assert rule["Targets"][0]["Arn"] == {"Ref": "AlertTopic"}
    vault = template["Resources"]["BackupVault"]["Properties"]["Notifications"]
    assert vault["BackupVaultEvents"] == ["RESTORE_JOB_COMPLETED", "COPY_JOB_FAILED"]


def test_a_nightly_reconciliation_that_does_not_report_for_26_hours_alarms(template):
    """Metric math on missing data: hours without a report count as 0; 26 such hours alarm."""
    alarm = template["Resources"]["ReconciliationMissingAlarm"]["Properties"]
    metrics = {m["Id"]: m for m in alarm["Metrics"]}

    stat = metrics["reported"]["MetricStat"]
    assert stat["Metric"]["MetricName"] == "NightlyReconciliationReported"
    assert (stat["Period"], stat["Stat"]) == (3600, "SampleCount")
    assert metrics["runs"]["Expression"] == "FILL(reported, 0)"
    assert (alarm["EvaluationPeriods"], alarm["DatapointsToAlarm"]) == (26, 26)
    assert (alarm["ComparisonOperator"], alarm["Threshold"]) == ("LessThanThreshold", 1)
    assert alarm["TreatMissingData"] == "breaching"


def test_each_facility_key_is_throttled_by_the_usage_plan_before_the_app_runs(template):
    """API.md, "Facilities": the app's per-key limit is the inner guard, the plan the outer one."""
    definition = template["Resources"]["RestAPI"]["Properties"]["DefinitionBody"]
    assert definition["x-amazon-apigateway-api-key-source"] == "AUTHORIZER"
    authorizer = definition["securityDefinitions"]["facility_key"]
    assert authorizer["x-amazon-apigateway-authorizer"]["type"] == "token"
    assert "FacilityKeyAuthorizer.Arn" in json.dumps(authorizer)
    guarded = {
        (path, verb)
        for path, methods in definition["paths"].items()
        for verb, operation in methods.items()
        if operation.get("security") == [{"facility_key": [], "usage_plan_key": []}]
    }
    facility = {
        (path, verb)
        for path, methods in definition["paths"].items()
        for verb in methods
        if path == "/v1/facility" or path.startswith("/v1/facility/")
    }
    assert facility
    assert guarded == facility  # every facility route, and nothing else

    plan = template["Resources"]["FacilityUsagePlan"]["Properties"]
    assert plan["ApiStages"] == [{"ApiId": {"Ref": "RestAPI"}, "Stage": {"Ref": "RestAPI.Stage"}}]
    assert plan["Throttle"] == {
        "RateLimit": {"Ref": "FacilityKeyRateLimit"},
        "BurstLimit": {"Ref": "FacilityKeyBurstLimit"},
    }
    # 100 requests a minute may come at once: the plan must not cut the app's default short
    assert template["Parameters"]["FacilityKeyBurstLimit"]["Default"] >= 100
    shared = template["Resources"]["NotAFacilityKey"]["Properties"]
    assert shared["Value"] == {"Fn::Sub": "ledger-${Stage}-not-a-facility-key"}
    assert template["Resources"]["NotAFacilityKeyInPlan"]["Properties"]["UsagePlanId"] == {
        "Ref": "FacilityUsagePlan"
    }

    function = template["Resources"]["FacilityKeyAuthorizer"]["Properties"]
    assert function["Handler"] == "chalicelib.api.gateway_authorizer.handler"
    assert function["CodeUri"] == template["Resources"]["APIHandler"]["Properties"]["CodeUri"]
    assert function["Runtime"] == package.RUNTIME
    api = template["Resources"]["APIHandler"]["Properties"]["Environment"]["Variables"]
    assert api["USAGE_PLAN_ID"] == {"Ref": "FacilityUsagePlan"}
    responses = definition["x-amazon-apigateway-gateway-responses"]
    assert responses["INVALID_API_KEY"]["statusCode"] == "401"  # unknown or revoked key
    assert (
        '"unauthenticated"' in responses["INVALID_API_KEY"]["responseTemplates"]["application/json"]
    )
    for suffix in ("Errors", "Throttles", "Duration"):
        assert f"FacilityKeyAuthorizer{suffix}Alarm" in template["Resources"]


def test_the_authorizer_loads_nothing_but_the_standard_library_and_the_key_rules():
    code = (
        "import sys; import chalicelib.api.gateway_authorizer; "
        "print(' '.join(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('pynamodb', 'botocore', 'boto3', 'chalice', 'pydantic', 'aws_lambda_powertools'))))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == ""


# -- configuration, runtime, dependencies ---------------------------------------------------------
def test_every_function_gets_the_crypto_gateway_and_fx_rates_which_have_no_default(template):
    for function in app_functions(template).values():
        variables = function["Properties"]["Environment"]["Variables"]
        assert variables["CRYPTO_GATEWAY_URL"] == {"Ref": "CryptoGatewayUrl"}
        assert variables["FX_RATES"] == {"Ref": "FxRates"}
    for name in ("CryptoGatewayUrl", "FxRates"):
        assert "Default" not in template["Parameters"][name]  # a stack cannot be made without


def test_every_function_runs_on_the_one_pinned_runtime(template):
    runtimes = {
        f["Properties"]["Runtime"]
        for f in resources(template, "AWS::Serverless::Function").values()
    }

    assert runtimes == {package.RUNTIME}
    assert sys.version_info[:2] == tuple(int(n) for n in package.RUNTIME[6:].split("."))
    makefile = (ROOT / "Makefile").read_text()
    assert f"PYTHON_VERSION := {package.RUNTIME[6:]}" in makefile


def test_packaging_with_another_python_fails(monkeypatch):
    other = package.Function("api_handler", "api_handler", 29, "python3.11")
    monkeypatch.setattr(package, "chalice_functions", lambda stage: [other])

    with pytest.raises(SystemExit, match=r"python3\.11, not python3\.12"):
        package.merge_template("dev")


def test_the_package_pins_indirect_requirements_too():
    locked = package.locked_requirements()
    pins = dict(line.split("==") for line in locked.splitlines() if not line.startswith("#"))

    # direct (requirements.txt) and indirect (pydantic -> pydantic-core, botocore -> jmespath)
    assert {"pydantic", "pydantic-core", "botocore", "jmespath", "urllib3"} <= set(pins)
    assert "boto3" not in pins  # the runtime's own copy (requirements.txt says why)
    constraints = (ROOT / "constraints.txt").read_text().lower()
    for name, version in pins.items():
        assert f"{name}=={version}" in constraints.replace("_", "-")


def test_functions_do_not_load_the_xray_sdk_at_cold_start():
    """The stage traces requests (TracingEnabled); the functions' own tracing stays off, so no
    container pays for importing the X-Ray SDK (bench/cold_start.py measures the import)."""
    code = "import sys, app; print(sorted(m for m in sys.modules if 'xray' in m))"
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )

    assert result.stdout.strip() == "[]"


def test_the_balance_monitor_check_runs_every_5_minutes_reads_items_and_pages(template):
    """It reads monitors and balances, writes a monitor's state with its audit event, and
    publishes to the alert topic: nothing else (no delete, scan, mail or secret)."""
    function = template["Resources"]["BalanceMonitors"]["Properties"]
    (event,) = function["Events"].values()
    assert event["Properties"]["Schedule"] == "rate(5 minutes)"
    actions = granted_actions(template, "BalanceMonitorsRole")
    assert {"dynamodb:Query", "dynamodb:BatchGetItem", "sns:Publish"} <= actions
    assert (
        not {
            "dynamodb:DeleteItem",
            "dynamodb:Scan",
            "ses:SendEmail",
            "secretsmanager:GetSecretValue",
        }
        & actions
    )
    config = template["Resources"]["BalanceMonitorsInvokeConfig"]["Properties"]
    assert config["MaximumRetryAttempts"] == package.DEFAULT_ASYNC_RETRIES
    assert "BalanceMonitorsErrorsAlarm" in template["Resources"]


def test_the_webhook_sender_runs_every_minute_and_deletes_only_fanned_out_events(template):
    function = template["Resources"]["DeliverWebhooks"]["Properties"]
    (event,) = function["Events"].values()
    assert event["Properties"]["Schedule"] == "rate(1 minute)"
    assert function["Timeout"] == 90  # a run starts no attempt after 45 s (services/webhooks.py)

    actions = granted_actions(template, "DeliverWebhooksRole")
    assert "ses:SendEmail" not in actions
    assert "dynamodb:Scan" not in actions
    assert {"sns:Publish", "secretsmanager:GetSecretValue", "dynamodb:DeleteItem"} <= actions
    own = [s for name, s in role_statements(template) if name == "DeliverWebhooksRole"]
    [deleting] = [s for s in own if "dynamodb:DeleteItem" in as_list(s["Action"])]
    assert deleting["Condition"]["ForAllValues:StringLike"]["dynamodb:LeadingKeys"] == ["WHEVT#*"]
