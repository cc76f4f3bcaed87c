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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PROJECT_DIR = Path(__file__).resolve().parents[1]
INFRA = PROJECT_DIR / "infra"
FRAGMENTS = ("table.json", "operations.json", "api.json")
# API Gateway's own errors, written into the API's definition (so each change redeploys the stage).
GATEWAY_RESPONSES = INFRA / "api-gateway-responses.json"
# The one Lambda runtime: the Python that runs `make run`, `make test` and `make package` (the
# Makefile picks it; Chalice takes the runtime from the interpreter that packages).
RUNTIME = "python3.12"
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
    "CRYPTO_GATEWAY_URL": {"Ref": "CryptoGatewayUrl"},
    "FX_RATES": {"Ref": "FxRates"},
}


# What one function learns from the stack besides STACK_ENVIRONMENT.
FUNCTION_ENVIRONMENT: dict[str, dict[str, Any]] = {
    # The API hands an admin's reconciliation run to this function (asynchronously).
    # ... and keeps one API Gateway key per facility API key in the usage plan.
    API_HANDLER: {
        "RECONCILIATION_FUNCTION": {"Ref": "ReconciliationRun"},
        "USAGE_PLAN_ID": {"Ref": "FacilityUsagePlan"},
    },
    # The drill restores the latest AWS Backup recovery point every other week.
    "restore_drill": {
        "BACKUP_VAULT_NAME": {"Ref": "BackupVault"},
        "BACKUP_RESTORE_ROLE_ARN": {"Fn::GetAtt": ["BackupRole", "Arn"]},
    },
}

# Parameters whose default depends on the stage packaged (prod: WAF on, a compliance-mode vault
# lock, the stage throttle sized for production; see docs/deploy.md, "Sizing").
STAGE_DEFAULTS: dict[str, dict[str, Any]] = {
    "dev": {},
    "prod": {
        "EnableWaf": "true",
        "VaultLockMode": "compliance",
        "ApiThrottleRate": 400,
        "ApiThrottleBurst": 800,
        "DeploymentType": "Canary10Percent10Minutes",
    },
}

# The API's alias: a deploy publishes a version and CodeDeploy shifts the alias to it (in prod 10%
# for 10 minutes first), rolled back by these alarms (1-minute periods: they can fire in time).
API_ALIAS = "live"
ROLLBACK_ALARMS = ("Api5xxAlarm", "ApiNewCodeErrorsAlarm")


# Retries of a failed asynchronous invocation (schedules, the admin's reconciliation run) before
# its event goes to the failed-invocations queue; Lambda's default is 2. A restore drill retried
# would make three full restores of the table, and an admin restarts a reconciliation herself.
ASYNC_RETRIES: dict[str, int] = {"restore_drill": 0, "reconciliation_run": 0}
DEFAULT_ASYNC_RETRIES = 2
# checkov's function checks that do not apply, each with its reason (docs/deploy.md, "Static
# checks"): the template's other suppressions sit on their resources in infra/*.json.
FUNCTION_CHECKOV_SKIPS = [
    {
        "id": "CKV_AWS_116",
        "comment": "No DLQ: asynchronous invocations go to the FailedInvocations queue through "
        "EventInvokeConfig on-failure destinations (alarmed); the API is invoked synchronously",
    },
    {
        "id": "CKV_AWS_117",
        "comment": "No VPC: the functions reach only AWS public endpoints, Stripe and the crypto "
        "gateway; a VPC would add NAT gateways or endpoints and no protection",
    },
    {
        "id": "CKV_AWS_173",
        "comment": "No secret in the environment (secrets are read from Secrets Manager); Lambda "
        "encrypts variables at rest with its own key",
    },
]

# The facility routes (API.md, "Facilities") and the authorizer that names each request's key for
# the usage plan (infra/api.json FacilityUsagePlan, chalicelib/api/gateway_authorizer.py).
FACILITY_ROUTES = ("/v1/facility",)
AUTHORIZER = "facility_key_authorizer"  # infra/api.json's FacilityKeyAuthorizer
AUTHORIZER_TIMEOUT = 5
AUTHORIZER_CACHE_SECONDS = 300
FACILITY_SECURITY: dict[str, Any] = {
    "x-amazon-apigateway-api-key-source": "AUTHORIZER",
    "securityDefinitions": {
        "facility_key": {
            "type": "apiKey",
            "name": "Authorization",
            "in": "header",
            "x-amazon-apigateway-authtype": "custom",
            "x-amazon-apigateway-authorizer": {
                "type": "token",
                "authorizerUri": {
                    "Fn::Sub": "arn:${AWS::Partition}:apigateway:${AWS::Region}:lambda:path/"
                    "2015-03-31/functions/${FacilityKeyAuthorizer.Arn}/invocations"
                },
                "authorizerResultTtlInSeconds": AUTHORIZER_CACHE_SECONDS,
            },
        },
        "usage_plan_key": {"type": "apiKey", "name": "x-api-key", "in": "header"},
    },
}

# A function's Duration alarm fires past this share of its timeout.
DURATION_ALARM_SHARE = 0.8


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


@dataclass(frozen=True)
class Function:
    """One Lambda function Chalice packages: its name, its role's name, its timeout (seconds)."""

    name: str
    role: str
    timeout: int
    runtime: str


def chalice_functions(stage: str) -> list[Function]:
    """Each Lambda function Chalice packages for ``stage``, by name."""
    from chalice.cli.factory import CLIFactory
    from chalice.deploy import models
    from chalice.deploy.appgraph import ApplicationGraphBuilder

    config = CLIFactory(str(PROJECT_DIR)).create_config_obj(chalice_stage_name=stage)
    graph = ApplicationGraphBuilder().build(config, stage)
    found: dict[str, Function] = {}
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
            found[resource.resource_name] = Function(
                resource.resource_name, role.resource_name, resource.timeout, resource.runtime
            )
        pending.extend(resource.dependencies())
    return [found[name] for name in sorted(found)]


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
    for name, value in STAGE_DEFAULTS[stage].items():
        merged["Parameters"][name]["Default"] = value
    return merged


def function_policy(policies: dict[str, Any], function: str) -> list[dict[str, Any]]:
    """The statements ``infra/iam.json`` lists for ``function``; every function must be listed,
    so a new scheduled function gets no permission by accident (nor the API's)."""
    names = policies["Functions"].get(function)
    if names is None:
        raise SystemExit(f"infra/iam.json: no policy for the function {function!r} (Functions)")
    return [copy.deepcopy(policies["Statements"][name]) for name in names]


def function_alarm(
    function: str, suffix: str, description: str, **properties: Any
) -> dict[str, Any]:
    """An alarm on one of ``function``'s Lambda metrics that pages the alert topic (and says OK)."""
    return {
        "Type": "AWS::CloudWatch::Alarm",
        "Properties": {
            "AlarmName": {"Fn::Sub": f"ledger-${{Stage}}-{function}-{suffix}"},
            "AlarmDescription": description,
            "Namespace": "AWS/Lambda",
            "Dimensions": [{"Name": "FunctionName", "Value": {"Ref": cfn_name(function)}}],
            "Period": 300,
            "EvaluationPeriods": 1,
            "ComparisonOperator": "GreaterThanThreshold",
            "TreatMissingData": "notBreaching",
            "AlarmActions": [{"Ref": "AlertTopic"}],
            "OKActions": [{"Ref": "AlertTopic"}],
            **properties,
        },
    }


def function_resources(function: Function, profile: list[dict]) -> dict[str, Any]:
    """The merge-template entries for one function: its role's policy, environment and alarms."""
    fn, role_name = cfn_name(function.name), cfn_name(function.role)
    log_group = to_cfn_name(function.name) + "LogGroup"
    logs = {
        "Sid": "OwnLogGroup",
        "Effect": "Allow",
        "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
        "Resource": {"Fn::GetAtt": [log_group, "Arn"]},
    }
    resources: dict[str, Any] = {}
    properties: dict[str, Any] = {
        "Environment": {
            "Variables": follow_active_table(
                {**STACK_ENVIRONMENT, **FUNCTION_ENVIRONMENT.get(function.name, {})}
            )
        }
    }
    if function.name == API_HANDLER:
        # Safe deploys: each deploy publishes a version behind the alias the API invokes, and
        # CodeDeploy shifts traffic to it (DeploymentType), rolling back on ROLLBACK_ALARMS.
        properties["AutoPublishAlias"] = API_ALIAS
        properties["DeploymentPreference"] = {
            "Type": {"Ref": "DeploymentType"},
            "Alarms": [{"Ref": alarm} for alarm in ROLLBACK_ALARMS],
        }
    else:  # invoked asynchronously: bounded retries, then the queue
        resources[f"{fn}InvokeConfig"] = {
            "Type": "AWS::Lambda::EventInvokeConfig",
            "Properties": {
                "FunctionName": {"Ref": fn},
                "Qualifier": "$LATEST",
                "MaximumRetryAttempts": ASYNC_RETRIES.get(function.name, DEFAULT_ASYNC_RETRIES),
                "DestinationConfig": {
                    "OnFailure": {"Destination": {"Fn::GetAtt": ["FailedInvocations", "Arn"]}}
                },
            },
        }
    name = function.name
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
        fn: {"Properties": properties, "Metadata": {"checkov": {"skip": FUNCTION_CHECKOV_SKIPS}}},
        # Chalice names the API handler's group after ``ApiHandler``, a function it renamed.
        log_group: {
            "Properties": {
                "LogGroupName": {"Fn::Sub": f"/aws/lambda/${{{fn}}}"},
                "KmsKeyId": {"Fn::GetAtt": ["LogsKey", "Arn"]},
            }
        },
        **function_alarms(name, function.timeout),
    }


def function_alarms(name: str, timeout: int) -> dict[str, Any]:
    """A function's alarms: it raised, Lambda refused to run it, it ran close to its timeout."""
    fn = cfn_name(name)
    return {
        f"{fn}ErrorsAlarm": function_alarm(
            name,
            "errors",
            f"Lambda function {name} raised errors",
            MetricName="Errors",
            Statistic="Sum",
            Threshold=0,
        ),
        f"{fn}ThrottlesAlarm": function_alarm(
            name,
            "throttles",
            f"Lambda refused to run {name}: its reserved concurrency (or the account's) is used up",
            MetricName="Throttles",
            Statistic="Sum",
            Threshold=0,
        ),
        f"{fn}DurationAlarm": function_alarm(
            name,
            "duration",
            f"{name} ran for over 80% of its {timeout} s timeout: it is close to being "
            "cut off (a bigger table, a slow dependency)",
            MetricName="Duration",
            Statistic="Maximum",
            Threshold=int(timeout * 1000 * DURATION_ALARM_SHARE),
        ),
    }


def merge_template(stage: str) -> dict[str, Any]:
    """The one template ``chalice package --merge-template`` merges into its own for ``stage``."""
    if stage not in STAGES:
        raise SystemExit(f"unknown stage {stage!r}: one of {', '.join(STAGES)}")
    template = merge_fragments(stage)
    policies = json.loads(IAM_PROFILES.read_text())
    for function in chalice_functions(stage):
        if function.runtime != RUNTIME:
            raise SystemExit(
                f"{function.name} would run on {function.runtime}, not {RUNTIME}: package with "
                f"the Python of `make` (.venv, {RUNTIME}); see docs/deploy.md"
            )
        profile = function_policy(policies, function.name)
        for name, body in function_resources(function, profile).items():
            if name in template["Resources"]:
                raise SystemExit(f"resource {name} is defined twice")
            template["Resources"][name] = body
    responses = json.loads(GATEWAY_RESPONSES.read_text())
    definition = responses | copy.deepcopy(FACILITY_SECURITY)
    template["Resources"]["RestAPI"]["Properties"]["DefinitionBody"] = definition
    # API Gateway's facility key authorizer (infra/api.json) is watched like every function.
    template["Resources"].update(function_alarms(AUTHORIZER, AUTHORIZER_TIMEOUT))
    return template


def is_facility_route(path: str) -> bool:
    return any(path == route or path.startswith(route + "/") for route in FACILITY_ROUTES)


def guard_facility_routes(template: dict[str, Any]) -> dict[str, Any]:
    """Every method of a facility route goes through the authorizer and needs a usage-plan key
    (the one the authorizer names), so the usage plan throttles each facility key."""
    paths = template["Resources"]["RestAPI"]["Properties"]["DefinitionBody"]["paths"]
    for path, methods in paths.items():
        if not is_facility_route(path):
            continue
        for verb, operation in methods.items():
            if verb != "options":
                operation["security"] = [{"facility_key": [], "usage_plan_key": []}]
    return template


def invoke_through_alias(template: dict[str, Any]) -> dict[str, Any]:
    """Point the API's integrations and its invoke permission at the API handler's alias (Chalice
    writes the function itself), so that a canary deploy shifts the API's traffic."""
    alias = {"Ref": f"{cfn_name(API_HANDLER)}.Alias"}
    target = f"${{{cfn_name(API_HANDLER)}.Arn}}"

    def rewrite(node: Any) -> Any:
        if isinstance(node, list):
            return [rewrite(item) for item in node]
        if not isinstance(node, dict):
            return node
        sub = node.get("Fn::Sub")
        if isinstance(sub, str) and target in sub:
            return {"Fn::Sub": [sub.replace(target, "${Handler}"), {"Handler": alias}]}
        return {key: rewrite(value) for key, value in node.items()}

    resources = template["Resources"]
    resources["RestAPI"] = rewrite(resources["RestAPI"])
    permission = resources[f"{cfn_name(API_HANDLER)}InvokePermission"]["Properties"]
    permission["FunctionName"] = alias
    return template


def package(stage: str, out_dir: Path, *, code_only: bool = False) -> Path:
    """Run ``chalice package`` for ``stage`` into ``out_dir``; the path of the SAM template.

    Chalice packages a copy of the app whose requirements.txt pins every package the functions
    import, indirect ones included, at the versions installed in this environment
    (``locked_requirements``), and fetches their Lambda (manylinux) wheels from the package index
    on every code change: ``make package`` needs the index, never AWS. ``code_only`` packages the
    copy without requirements instead: the same template, a zip of the app's own code only, and
    nothing leaves the machine (the tests use it).
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    merge_file = out_dir.parent / f"{out_dir.name}.merge-template.json"
    merge_file.write_text(json.dumps(merge_template(stage), indent=2) + "\n")
    env = {**os.environ, "AWS_DEFAULT_REGION": os.environ.get("AWS_DEFAULT_REGION", "us-east-1")}
    chalice = Path(sys.executable).with_name("chalice")
    command = [str(chalice), "package", "--stage", stage, "--merge-template", str(merge_file)]
    with tempfile.TemporaryDirectory() as scratch:
        project = app_copy(Path(scratch))
        if not code_only:
            (project / "requirements.txt").write_text(locked_requirements())
            cache = PROJECT_DIR / ".chalice" / "deployments"
            cache.mkdir(parents=True, exist_ok=True)
            (project / ".chalice" / "deployments").symlink_to(cache, target_is_directory=True)
        subprocess.run([*command, str(out_dir)], cwd=project, env=env, check=True)  # noqa: S603
    if not code_only:
        prune_chalice_cache(PROJECT_DIR / ".chalice" / "deployments", keep=1)
    sam = out_dir / "sam.json"
    template = guard_facility_routes(invoke_through_alias(json.loads(sam.read_text())))
    sam.write_text(json.dumps(template, indent=2) + "\n")
    return sam


def locked_requirements(requirements: Path = PROJECT_DIR / "requirements.txt") -> str:
    """requirements.txt with every indirect requirement pinned too, at the installed versions
    (which constraints.txt pins), for Lambda's Python (``RUNTIME``, Linux)."""
    from importlib import metadata

    from packaging.markers import default_environment
    from packaging.requirements import Requirement

    target = default_environment() | {
        "python_version": RUNTIME.removeprefix("python"),
        "python_full_version": RUNTIME.removeprefix("python") + ".0",
        "sys_platform": "linux",
        "platform_system": "Linux",
        "os_name": "posix",
    }
    pins: dict[str, str] = {}
    pending: list[tuple[Requirement, str]] = []
    for line in requirements.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            pending.append((Requirement(line), ""))
    while pending:
        requirement, extra = pending.pop()
        if requirement.marker and not requirement.marker.evaluate(target | {"extra": extra}):
            continue
        name = requirement.name.lower().replace("_", "-")
        if name in pins:
            continue
        distribution = metadata.distribution(requirement.name)
        pins[name] = distribution.version
        for extra_name in ["", *sorted(requirement.extras)]:
            for child in distribution.requires or []:
                pending.append((Requirement(child), extra_name))
    head = "# Generated by infra/package.py: requirements.txt and what it needs, pinned.\n"
    return head + "".join(f"{name}=={version}\n" for name, version in sorted(pins.items()))


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
