"""Deploy a packaged stage: preflight, S3 upload, a reviewed change set, termination protection.

    python -m infra.deploy --stage dev|prod --bucket BUCKET [--region R] [--yes]
                           [--parameters-file FILE] [--template build/<stage>/sam.json]
                           [Name=Value ...]

``make deploy`` runs it after ``make package``. In order:

1. **Preflight**, before any AWS call: every setting a working stage needs is given (in the
   parameters file, a JSON object ``{"Name": "Value"}``, or as ``Name=Value``, which wins) and well
   formed (``REQUIRED``: the alert address, the mail sender, the
   public URL, the crypto gateway, the FX rates); one line per problem, exit 2. The parameters
   are given in full on every deploy, so what a stage runs with is always in the deploy command
   (docs/deploy.md, "Parameters").
2. A stack whose first creation failed (``ROLLBACK_COMPLETE``) is not touched: the command says
   how to delete it and stops.
3. ``aws cloudformation package``: the code zip and the template go to ``s3://BUCKET/ledger-<stage>``
   (the template is far over the 51,200 bytes CloudFormation takes inline).
4. A change set (``aws cloudformation deploy --no-execute-changeset``), printed; in prod the
   command asks before executing it (``--yes`` skips the question, for a pipeline); a change set
   that is declined is deleted and nothing changes.
5. Execute, wait, turn termination protection on.
6. AWS Backup's advanced DynamoDB features in the stack's region (recovery points encrypted with
   the vault's key, copies to another region; an idempotent account setting); with
   ``BackupCopyRegion``, the copy vault's stack ``ledger-<stage>-backup-copy`` there
   (``infra/backup-copy-vault.json``, the stage's vault lock) and the same setting.
7. Print the stack's outputs.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parents[1]
STAGES = ("dev", "prod")
CAPABILITIES = ("CAPABILITY_IAM", "CAPABILITY_AUTO_EXPAND")
COPY_VAULT_TEMPLATE = PROJECT_DIR / "infra" / "backup-copy-vault.json"
# Passed to the copy vault's stack too (the same lock and retention in both regions).
COPY_VAULT_PARAMETERS = ("VaultLockMode", "VaultLockMinDays", "VaultLockMaxDays")

EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
HTTPS_URL = re.compile(r"^https://[^\s/]+\.[^\s/]+(/\S*)?$")
REGION = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d$")


def _email(value: str) -> str | None:
    return None if EMAIL.match(value) else f"{value!r} is not an e-mail address"


def _https(value: str) -> str | None:
    return None if HTTPS_URL.match(value) else f"{value!r} is not an https:// URL"


def _fx_rates(value: str) -> str | None:
    from chalicelib.adapters.rates import StaticRateSource

    try:
        StaticRateSource.from_json(value)
    except ValueError as exc:
        return str(exc)
    return None if json.loads(value) else "no rate given: quotes and swaps would all fail"


@dataclass(frozen=True)
class Required:
    name: str
    what: str
    check: Callable[[str], str | None]


REQUIRED = (
    Required("AlertEmail", "the address alarms are sent to", _email),
    Required("MailFrom", "the sender of the ledger's mail (a verified SES identity)", _email),
    Required("PublicBaseUrl", "the client app's URL, which mailed links point at", _https),
    Required("CryptoGatewayUrl", "the crypto gateway's API (CRYPTO_GATEWAY_URL)", _https),
    Required("FxRates", 'the FX rates, a JSON object like {"USD/BTC": "0.00001047"}', _fx_rates),
)


def parse_parameters(items: Sequence[str]) -> tuple[dict[str, str], list[str]]:
    """``Name=Value`` items as a dict, and a problem per malformed or repeated item."""
    parameters: dict[str, str] = {}
    problems: list[str] = []
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not re.match(r"^[A-Za-z][A-Za-z0-9]*$", name):
            problems.append(f"{item!r}: a parameter is Name=Value")
        elif name in parameters:
            problems.append(f"{name}: given twice")
        else:
            parameters[name] = value
    return parameters, problems


def read_parameters_file(path: Path) -> tuple[dict[str, str], list[str]]:
    """A JSON object of parameters; numbers are given as numbers or strings alike."""
    try:
        loaded = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        return {}, [f"{path}: not a readable JSON object ({exc})"]
    if not isinstance(loaded, dict) or not all(
        isinstance(v, str | int | float) and not isinstance(v, bool) for v in loaded.values()
    ):
        return {}, [
            f'{path}: must be a JSON object of names to strings, like {{"MailFrom": "..."}}'
        ]
    return {str(k): str(v) for k, v in loaded.items()}, []


def preflight(stage: str, region: str, parameters: dict[str, str]) -> list[str]:
    """Every reason the stage cannot be deployed as given; empty when it can."""
    problems: list[str] = []
    if stage not in STAGES:
        problems.append(f"STAGE {stage!r}: one of {', '.join(STAGES)}")
    if not REGION.match(region):
        problems.append(f"region {region!r} is not an AWS region name")
    for required in REQUIRED:
        value = parameters.get(required.name, "")
        if not value:
            problems.append(f"{required.name} is missing: {required.what}")
        elif (problem := required.check(value)) is not None:
            problems.append(f"{required.name}: {problem}")
    copy_region = parameters.get("BackupCopyRegion", "")
    if copy_region and not REGION.match(copy_region):
        problems.append(f"BackupCopyRegion {copy_region!r} is not an AWS region name")
    elif copy_region == region:
        problems.append("BackupCopyRegion must be another region than the stack's")
    if "Stage" in parameters:
        problems.append("Stage is set by STAGE, not as a parameter")
    return problems


class Aws:
    """The AWS CLI, one command at a time, echoed; a failure stops the deploy."""

    def __init__(self, region: str, run: Callable[..., subprocess.CompletedProcess[str]]):
        self.region = region
        self._run = run

    def __call__(self, *args: str, region: str | None = None, check: bool = True) -> str:
        command = ["aws", *args, "--region", region or self.region]
        print("+ " + " ".join(command), flush=True)
        env = {**os.environ, "AWS_PAGER": ""}
        result = self._run(command, capture_output=True, text=True, env=env, check=False)
        if result.stdout:
            print(result.stdout, end="" if result.stdout.endswith("\n") else "\n")
        if check and result.returncode != 0:
            raise SystemExit(f"aws {args[0]} {args[1]} failed: {result.stderr.strip()}")
        return result.stdout if result.returncode == 0 else ""


def overrides(parameters: dict[str, str]) -> list[str]:
    return [f"{name}={value}" for name, value in sorted(parameters.items())]


def available_change_sets(aws: Aws, stack: str) -> set[str]:
    """The stack's change sets not executed yet (none when the stack does not exist yet)."""
    listed = aws("cloudformation", "list-change-sets", "--stack-name", stack,
                 "--query", "Summaries[?ExecutionStatus=='AVAILABLE'].ChangeSetId",
                 "--output", "text", check=False)  # fmt: skip
    return {item for item in listed.split() if item != "None"}


def deploy(
    stage: str,
    bucket: str,
    template: Path,
    parameters: dict[str, str],
    aws: Aws,
    *,
    ask: Callable[[str], str] | None,
) -> int:
    """Steps 2-5 of the module's docstring; ``ask`` is None when no question is to be asked."""
    stack = f"ledger-{stage}"
    prefix = f"ledger-{stage}"
    status = stack_status(aws, stack)
    if status == "ROLLBACK_COMPLETE":
        print(
            f"{stack} is ROLLBACK_COMPLETE: its first creation failed and nothing of it is left "
            "(the table and the vault are removed when a creation rolls back). Read why in "
            f"`aws cloudformation describe-stack-events --stack-name {stack}`, then "
            f"`aws cloudformation delete-stack --stack-name {stack}` and deploy again.",
            file=sys.stderr,
        )
        return 1
    packaged = template.with_name("packaged.yaml")
    aws("cloudformation", "package", "--template-file", str(template),
        "--s3-bucket", bucket, "--s3-prefix", prefix,
        "--output-template-file", str(packaged))  # fmt: skip
    earlier = available_change_sets(aws, stack)
    aws("cloudformation", "deploy", "--template-file", str(packaged), "--stack-name", stack,
        "--s3-bucket", bucket, "--s3-prefix", prefix, "--capabilities", *CAPABILITIES,
        "--no-execute-changeset", "--no-fail-on-empty-changeset",
        "--parameter-overrides", f"Stage={stage}", *overrides(parameters))  # fmt: skip
    new = sorted(available_change_sets(aws, stack) - earlier)
    if len(new) > 1:
        raise SystemExit(f"{stack}: several new change sets ({', '.join(new)}): another deploy?")
    if not new:
        print(f"{stack}: no changes to deploy")
    else:
        change_set = new[0]
        aws("cloudformation", "describe-change-set", "--change-set-name", change_set,
            "--query", "Changes[].ResourceChange.{Action:Action,Resource:LogicalResourceId,"
            "Type:ResourceType,Replacement:Replacement}", "--output", "table")  # fmt: skip
        copy_region = parameters.get("BackupCopyRegion", "")
        if copy_region:
            print(f"and the copy vault's stack {stack}-backup-copy in {copy_region}")
        if ask is not None and ask(f"Execute this change set on {stack}? [y/N] ").strip() != "y":
            aws("cloudformation", "delete-change-set", "--change-set-name", change_set)
            print(f"{stack}: change set declined and deleted; nothing changed")
            return 1
        aws("cloudformation", "execute-change-set", "--change-set-name", change_set)
        waiter = (
            "stack-create-complete"
            if status in (None, "REVIEW_IN_PROGRESS")
            else ("stack-update-complete")
        )
        aws("cloudformation", "wait", waiter, "--stack-name", stack)
    aws("cloudformation", "update-termination-protection", "--enable-termination-protection",
        "--stack-name", stack)  # fmt: skip
    backup_regions(aws, stage, parameters)
    aws("cloudformation", "describe-stacks", "--stack-name", stack,
        "--query", "Stacks[0].Outputs", "--output", "table")  # fmt: skip
    return 0


def stack_status(aws: Aws, stack: str) -> str | None:
    """The stack's status, or None when there is no such stack."""
    status = aws("cloudformation", "describe-stacks", "--stack-name", stack, "--query",
                 "Stacks[0].StackStatus", "--output", "text", check=False).strip()  # fmt: skip
    return status or None


def backup_regions(aws: Aws, stage: str, parameters: dict[str, str]) -> None:
    """AWS Backup's advanced DynamoDB features (recovery points encrypted with the vault's key,
    copies to another region; an account setting per region, idempotent) in the stack's region,
    and, with ``BackupCopyRegion``, the copy vault's stack there with the stage's lock (the
    values given, else the stage's defaults: a compliance lock in prod) and the same setting."""
    from infra.package import STAGE_DEFAULTS

    aws("backup", "update-region-settings",
        "--resource-type-opt-in-preference", "DynamoDB=true",
        "--resource-type-management-preference", "DynamoDB=true")  # fmt: skip
    copy_region = parameters.get("BackupCopyRegion", "")
    if not copy_region:
        return
    lock = {k: str(v) for k, v in STAGE_DEFAULTS[stage].items() if k in COPY_VAULT_PARAMETERS}
    lock |= {k: parameters[k] for k in COPY_VAULT_PARAMETERS if k in parameters}
    copy_stack = f"ledger-{stage}-backup-copy"
    aws("cloudformation", "deploy", "--template-file", str(COPY_VAULT_TEMPLATE),
        "--stack-name", copy_stack, "--no-fail-on-empty-changeset",
        "--parameter-overrides", f"Stage={stage}", *overrides(lock),
        region=copy_region)  # fmt: skip
    aws("cloudformation", "update-termination-protection", "--enable-termination-protection",
        "--stack-name", copy_stack, region=copy_region)  # fmt: skip
    aws("backup", "update-region-settings",
        "--resource-type-opt-in-preference", "DynamoDB=true",
        "--resource-type-management-preference", "DynamoDB=true", region=copy_region)  # fmt: skip


def main(
    argv: list[str] | None = None,
    *,
    run: Callable[..., subprocess.CompletedProcess[str]] = subprocess.run,
    ask: Callable[[str], str] = input,
) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stage", default="dev")
    parser.add_argument("--bucket", default="", help="S3 bucket for the code and the template")
    parser.add_argument("--region", default="")
    parser.add_argument("--template", type=Path, help="default: build/<stage>/sam.json")
    parser.add_argument("--yes", action="store_true", help="execute prod's change set unasked")
    parser.add_argument(
        "--preflight", action="store_true", help="check the settings, deploy nothing"
    )
    parser.add_argument("--parameters-file", type=Path, help='JSON: {"Name": "Value", ...}')
    parser.add_argument("parameters", nargs="*", metavar="Name=Value")
    args = parser.parse_args(argv)
    region = args.region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    region = region or "us-east-1"
    parameters, problems = parse_parameters(args.parameters)
    if args.parameters_file:
        from_file, file_problems = read_parameters_file(args.parameters_file)
        parameters = from_file | parameters
        problems += file_problems
    problems += preflight(args.stage, region, parameters)
    if not args.bucket:
        problems.append("DEPLOY_BUCKET is missing: the S3 bucket for the code and the template")
    template = args.template or PROJECT_DIR / "build" / args.stage / "sam.json"
    if not args.preflight and not template.is_file():
        problems.append(f"{template} does not exist: run make package STAGE={args.stage}")
    if shutil.which("aws") is None:
        problems.append("the AWS CLI (aws) is not on PATH: install it and configure credentials")
    if problems:
        print(
            f"make deploy STAGE={args.stage}: not deployed, nothing was sent to AWS:",
            file=sys.stderr,
        )
        for problem in problems:
            print(f"  - {problem}", file=sys.stderr)
        print("See docs/deploy.md, 'Parameters'.", file=sys.stderr)
        return 2
    if args.preflight:
        print(f"preflight of {args.stage}: every required setting is given and well formed")
        return 0
    prompt = None if args.stage != "prod" or args.yes else ask
    return deploy(args.stage, args.bucket, template, parameters, Aws(region, run), ask=prompt)


if __name__ == "__main__":
    sys.exit(main())
