"""Build a stage's deployable template: ``chalice package --merge-template`` with infra/'s parts.

    python -m infra.package --stage dev|prod [--out build/<stage>]

writes ``<out>/sam.json`` (a SAM template: the app's functions and API, the table, the alert topic,
the backup plan, the alarms and the IAM policies) and ``<out>/deployment.zip``. It never calls AWS
(``AWS_DEFAULT_REGION`` only satisfies Chalice; Chalice does fetch the Lambda wheels of
requirements.txt from the package index, see ``package``); ``make deploy`` uploads and deploys the
result (docs/deploy.md).

Chalice takes one merge template, so this module first assembles it from:

- ``infra/table.json``: the table and its KMS key, unchanged (the local stack reads the same file);
- ``infra/operations.json``: the alert topic, backup vault/plan/selection and alarms;
- ``infra/api-gateway-responses.json``: API Gateway's own errors in the contract's envelope;
- per function Chalice will package (read from Chalice's own application graph): its role's
  policy, the statements ``infra/iam.json`` lists for that function (a function it does not list
  fails the packaging, so a new ``@app.schedule`` must be given its own least privilege), its
  own log group, an alarm on its Lambda errors, and the environment that points it at the stack's
  resources (``TABLE_NAME``, ``ALERT_TOPIC_ARN``, ``SECRETS_ID``, ``MAIL_FROM``, ...) by
  ``Ref``, so the code and the template cannot disagree on a name.

Chalice's generated policy (``autogen_policy``) is off in ``.chalice/config.json``: it cannot see
PynamoDB's calls and would be ``*``-scoped anyway. The role's policy is replaced here, so the file
Chalice requires (``.chalice/policy-base.json``) only ever applies to ``chalice deploy``, which
this project does not use.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

PROJECT_DIR = Path(__file__).resolve().parents[1]
INFRA = PROJECT_DIR / "infra"
FRAGMENTS = ("table.json", "operations.json", "api-gateway-responses.json")
IAM_PROFILES = INFRA / "iam.json"
STAGES = ("dev", "prod")
API_HANDLER = "api_handler"
DESCRIPTION = "Ledger ({stage}): the Chalice app, its DynamoDB table, backups, alarms and IAM."
# What every function learns from the stack rather than from .chalice/config.json.
STACK_ENVIRONMENT: dict[str, Any] = {
    "TABLE_NAME": {"Ref": "LedgerTable"},
    "JWT_ACTIVE_KID": {"Ref": "JwtActiveKid"},
    "ALERT_TOPIC_ARN": {"Ref": "AlertTopic"},
    "SECRETS_ID": {
        "Fn::If": ["DefaultSecretsName", {"Fn::Sub": "ledger-${Stage}/app"}, {"Ref": "SecretsName"}]
    },
    "MAIL_FROM": {"Ref": "MailFrom"},
    "PUBLIC_BASE_URL": {"Ref": "PublicBaseUrl"},
    "TABLE_KMS_KEY_ARN": {"Fn::GetAtt": ["LedgerKey", "Arn"]},
}


# What one function learns from the stack besides STACK_ENVIRONMENT.
FUNCTION_ENVIRONMENT: dict[str, dict[str, Any]] = {
    # The API hands an admin's reconciliation run to this function (asynchronously).
    API_HANDLER: {"RECONCILIATION_FUNCTION": {"Ref": "ReconciliationRun"}},
}


# Retries of a failed asynchronous invocation (schedules, the admin's reconciliation run) before
# its event goes to the failed-invocations queue; Lambda's default is 2. A restore drill retried
# would make three full backup/restore cycles, and an admin restarts a reconciliation herself.
ASYNC_RETRIES: dict[str, int] = {"restore_drill": 0, "reconciliation_run": 0}
DEFAULT_ASYNC_RETRIES = 2


# The table the functions use: the stack's own, or after a restore the one named by ActiveTableName
# (docs/runbooks/restore.md, "Cut-over"). Outside infra/table.json every reference to LedgerTable
# (Ref, GetAtt Arn, ${LedgerTable.Arn} in a Sub) is rewritten to these, so the functions'
# environment, their IAM policies, the backup selection and the alarms move together.
USE_RESTORED = "UseRestoredTable"
ACTIVE_TABLE_NAME: dict[str, Any] = {
    "Fn::If": [USE_RESTORED, {"Ref": "ActiveTableName"}, {"Ref": "LedgerTable"}]
}
ACTIVE_TABLE_ARN: dict[str, Any] = {
    "Fn::If": [
        USE_RESTORED,
        {
            "Fn::Sub": "arn:${AWS::Partition}:dynamodb:${AWS::Region}:${AWS::AccountId}"
            ":table/${ActiveTableName}"
        },
        {"Fn::GetAtt": ["LedgerTable", "Arn"]},
    ]
}


def follow_active_table(node: Any) -> Any:
    """``node`` with every reference to LedgerTable replaced by the active table's."""
    if isinstance(node, list):
        return [follow_active_table(item) for item in node]
    if not isinstance(node, dict):
        return node
    if node == {"Ref": "LedgerTable"}:
        return copy.deepcopy(ACTIVE_TABLE_NAME)
    if node == {"Fn::GetAtt": ["LedgerTable", "Arn"]}:
        return copy.deepcopy(ACTIVE_TABLE_ARN)
    if isinstance(node.get("Fn::Sub"), str) and "${LedgerTable.Arn}" in node["Fn::Sub"]:
        text = node["Fn::Sub"].replace("${LedgerTable.Arn}", "${ActiveTableArn}")
        return {"Fn::Sub": [text, {"ActiveTableArn": copy.deepcopy(ACTIVE_TABLE_ARN)}]}
    return {key: follow_active_table(value) for key, value in node.items()}


def chalice_functions(stage: str) -> list[tuple[str, str]]:
    """``(function name, role name)`` of each Lambda function Chalice packages for ``stage``."""
    from chalice.cli.factory import CLIFactory
    from chalice.deploy import models
    from chalice.deploy.appgraph import ApplicationGraphBuilder

    config = CLIFactory(str(PROJECT_DIR)).create_config_obj(chalice_stage_name=stage)
    graph = ApplicationGraphBuilder().build(config, stage)
    found: dict[str, str] = {}
    pending: list[Any] = [graph]
    seen: set[int] = set()
    while pending:
        resource = pending.pop()
        if id(resource) in seen:
            continue
        seen.add(id(resource))
        if isinstance(resource, models.LambdaFunction):
            role = resource.role
            managed = isinstance(role, models.ManagedIAMRole)
            if not managed or not isinstance(role.policy, models.FileBasedIAMPolicy):
                raise SystemExit(
                    f"{resource.resource_name}: set autogen_policy false and let Chalice manage "
                    "the role (.chalice/config.json); the policy comes from infra/iam.json"
                )
            found[resource.resource_name] = role.resource_name
        pending.extend(resource.dependencies())
    return sorted(found.items())


def cfn_name(name: str) -> str:
    """Chalice's logical id for a resource name (the API's handler is renamed ``APIHandler``)."""
    from chalice.utils import to_cfn_resource_name

    return "APIHandler" if name == API_HANDLER else to_cfn_resource_name(name)


def to_cfn_name(name: str) -> str:
    from chalice.utils import to_cfn_resource_name

    return to_cfn_resource_name(name)


def merge_fragments(stage: str) -> dict[str, Any]:
    """infra/'s templates as one, ``Stage`` defaulting to ``stage``; a name defined twice fails."""
    merged: dict[str, Any] = {
        "AWSTemplateFormatVersion": "2010-09-09",
        "Description": DESCRIPTION.format(stage=stage),
    }
    for fragment in FRAGMENTS:
        template = json.loads((INFRA / fragment).read_text())
        if fragment != "table.json":
            template = follow_active_table(template)
        for section in ("Parameters", "Conditions", "Resources", "Outputs"):
            target = merged.setdefault(section, {})
            for name, body in template.get(section, {}).items():
                if name in target:
                    raise SystemExit(f"{fragment}: {section}.{name} is defined twice")
                target[name] = body
    merged["Parameters"]["Stage"]["Default"] = stage
    return merged


def function_policy(policies: dict[str, Any], function: str) -> list[dict[str, Any]]:
    """The statements ``infra/iam.json`` lists for ``function``; every function must be listed,
    so a new scheduled function gets no permission by accident (nor the API's)."""
    names = policies["Functions"].get(function)
    if names is None:
        raise SystemExit(f"infra/iam.json: no policy for the function {function!r} (Functions)")
    return [copy.deepcopy(policies["Statements"][name]) for name in names]


def function_resources(function: str, role: str, profile: list[dict]) -> dict[str, Any]:
    """The merge-template entries for one function: its role's policy, environment and alarm."""
    fn, role_name = cfn_name(function), cfn_name(role)
    log_group = to_cfn_name(function) + "LogGroup"
    logs = {
        "Sid": "OwnLogGroup",
        "Effect": "Allow",
        "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
        "Resource": {"Fn::GetAtt": [log_group, "Arn"]},
    }
    resources: dict[str, Any] = {}
    if function != API_HANDLER:  # invoked asynchronously: bounded retries, then the queue
        resources[f"{fn}InvokeConfig"] = {
            "Type": "AWS::Lambda::EventInvokeConfig",
            "Properties": {
                "FunctionName": {"Ref": fn},
                "Qualifier": "$LATEST",
                "MaximumRetryAttempts": ASYNC_RETRIES.get(function, DEFAULT_ASYNC_RETRIES),
                "DestinationConfig": {
                    "OnFailure": {"Destination": {"Fn::GetAtt": ["FailedInvocations", "Arn"]}}
                },
            },
        }
    return resources | {
        role_name: {
            "Properties": {
                "Policies": [
                    {
                        "PolicyName": f"{role_name}Policy",
                        "PolicyDocument": {
                            "Version": "2012-10-17",
                            "Statement": follow_active_table(profile),
                        },
                    }
                ]
            }
        },
        # Apart from the role: the group is named after the function, which needs the role.
        f"{role_name}LogsPolicy": {
            "Type": "AWS::IAM::Policy",
            "Properties": {
                "PolicyName": f"{role_name}Logs",
                "Roles": [{"Ref": role_name}],
                "PolicyDocument": {"Version": "2012-10-17", "Statement": [logs]},
            },
        },
        fn: {
            "Properties": {
                "Environment": {
                    "Variables": follow_active_table(
                        {**STACK_ENVIRONMENT, **FUNCTION_ENVIRONMENT.get(function, {})}
                    )
                }
            }
        },
        # Chalice names the API handler's group after ``ApiHandler``, a function it renamed.
        log_group: {"Properties": {"LogGroupName": {"Fn::Sub": f"/aws/lambda/${{{fn}}}"}}},
        f"{fn}ErrorsAlarm": {
            "Type": "AWS::CloudWatch::Alarm",
            "Properties": {
                "AlarmName": {"Fn::Sub": f"ledger-${{Stage}}-{function}-errors"},
                "AlarmDescription": f"Lambda function {function} raised errors",
                "Namespace": "AWS/Lambda",
                "MetricName": "Errors",
                "Dimensions": [{"Name": "FunctionName", "Value": {"Ref": fn}}],
                "Statistic": "Sum",
                "Period": 300,
                "EvaluationPeriods": 1,
                "Threshold": 0,
                "ComparisonOperator": "GreaterThanThreshold",
                "TreatMissingData": "notBreaching",
                "AlarmActions": [{"Ref": "AlertTopic"}],
            },
        },
    }


def merge_template(stage: str) -> dict[str, Any]:
    """The one template ``chalice package --merge-template`` merges into its own for ``stage``."""
    if stage not in STAGES:
        raise SystemExit(f"unknown stage {stage!r}: one of {', '.join(STAGES)}")
    template = merge_fragments(stage)
    policies = json.loads(IAM_PROFILES.read_text())
    for function, role in chalice_functions(stage):
        profile = function_policy(policies, function)
        for name, body in function_resources(function, role, profile).items():
            if name in template["Resources"]:
                raise SystemExit(f"resource {name} is defined twice")
            template["Resources"][name] = body
    return template


def package(stage: str, out_dir: Path, *, code_only: bool = False) -> Path:
    """Run ``chalice package`` for ``stage`` into ``out_dir``; the path of the SAM template.

    Chalice fetches the Lambda (manylinux) wheels of requirements.txt from the package index on
    every code change: ``make package`` needs the index, never AWS. ``code_only`` packages a copy
    of the app without requirements.txt instead: the same template, a zip of the app's own code
    only, and nothing leaves the machine (the tests use it).
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    merge_file = out_dir.parent / f"{out_dir.name}.merge-template.json"
    merge_file.write_text(json.dumps(merge_template(stage), indent=2) + "\n")
    env = {**os.environ, "AWS_DEFAULT_REGION": os.environ.get("AWS_DEFAULT_REGION", "us-east-1")}
    chalice = Path(sys.executable).with_name("chalice")
    command = [str(chalice), "package", "--stage", stage, "--merge-template", str(merge_file)]
    with tempfile.TemporaryDirectory() as scratch:
        project = app_copy(Path(scratch)) if code_only else PROJECT_DIR
        subprocess.run([*command, str(out_dir)], cwd=project, env=env, check=True)  # noqa: S603
    if not code_only:
        prune_chalice_cache(PROJECT_DIR / ".chalice" / "deployments", keep=1)
    return out_dir / "sam.json"


def app_copy(into: Path) -> Path:
    """What Chalice packages (app.py, chalicelib/, .chalice/ settings), without requirements."""
    shutil.copy2(PROJECT_DIR / "app.py", into / "app.py")
    shutil.copytree(
        PROJECT_DIR / "chalicelib",
        into / "chalicelib",
        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
    )
    (into / ".chalice").mkdir()
    for name in ("config.json", "policy-base.json"):
        shutil.copy2(PROJECT_DIR / ".chalice" / name, into / ".chalice" / name)
    return into


def prune_chalice_cache(deployments: Path, keep: int) -> None:
    """Chalice caches one ~25 MB zip per version of the code and never deletes one: keep the
    newest ``keep``."""
    zips = sorted(deployments.glob("*.zip"), key=lambda p: p.stat().st_mtime, reverse=True)
    for stale in zips[keep:]:
        stale.unlink(missing_ok=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stage", default="dev", choices=STAGES)
    parser.add_argument("--out", type=Path, help="output folder (default: build/<stage>)")
    args = parser.parse_args(argv)
    out = args.out or PROJECT_DIR / "build" / args.stage
    template = package(args.stage, out)
    print(f"packaged stage {args.stage}: {template} and {out / 'deployment.zip'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
