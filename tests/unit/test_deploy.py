"""``make deploy`` (``infra/deploy.py``) against a fake AWS CLI on PATH that records its arguments:
the preflight stops before any AWS call, the template goes through S3, the stack changes only
through a change set (which prod asks about), and termination protection ends every deploy."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from infra import deploy

ROOT = Path(__file__).resolve().parents[2]
FAKE_AWS = """#!{python}
import json, os, sys
args = sys.argv[1:]
state = os.environ["FAKE_AWS_DIR"]
with open(os.path.join(state, "calls.jsonl"), "a") as log:
    log.write(json.dumps(args) + "\\n")
command = " ".join(args[:2])
deployed = os.path.exists(os.path.join(state, "deployed"))
if command == "cloudformation list-change-sets":
    if not deployed:
        sys.exit(254 if os.environ.get("FAKE_AWS_NEW_STACK") else 0)
    print("arn:aws:cloudformation:eu-west-1:1:changeSet/awscli-1/abc")
elif command == "cloudformation deploy" and "--no-execute-changeset" in args:
    open(os.path.join(state, "deployed"), "w").close()
elif command == "cloudformation describe-stacks" and "Stacks[0].StackStatus" in args:
    if os.environ.get("FAKE_AWS_NEW_STACK"):
        sys.exit(254)  # "Stack with id ledger-dev does not exist"
    print(os.environ.get("FAKE_AWS_STATUS", "UPDATE_COMPLETE"))
"""
PARAMETERS = {
    "AlertEmail": "ops@clinic.example",
    "MailFrom": "no-reply@clinic.example",
    "PublicBaseUrl": "https://app.clinic.example",
    "CryptoGatewayUrl": "https://gateway.example.com/api",
    "FxRates": json.dumps({"USD/BTC": "0.00001047", "BTC/USD": "95500.00"}),
}


@pytest.fixture
def fake_aws(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    aws = bin_dir / "aws"
    aws.write_text(FAKE_AWS.format(python=sys.executable))
    aws.chmod(0o755)
    state = tmp_path / "aws"
    state.mkdir()
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_AWS_DIR", str(state))
    return state


@pytest.fixture
def template(tmp_path: Path) -> Path:
    path = tmp_path / "build" / "sam.json"
    path.parent.mkdir()
    path.write_text("{}")
    return path


def calls(state: Path) -> list[list[str]]:
    log = state / "calls.jsonl"
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def arguments(parameters: dict[str, str], *extra: str) -> list[str]:
    return [*extra, *(f"{name}={value}" for name, value in parameters.items())]


def test_a_stage_without_its_settings_is_not_deployed_and_aws_is_never_called(
    fake_aws, template, capsys
):
    code = deploy.main(
        ["--stage", "prod", "--bucket", "b", "--template", str(template), "MailFrom=nobody"]
    )

    err = capsys.readouterr().err
    assert code == 2
    assert calls(fake_aws) == []
    lines = [line for line in err.splitlines() if line.startswith("  - ")]
    assert lines == [
        "  - AlertEmail is missing: the address alarms are sent to",
        "  - MailFrom: 'nobody' is not an e-mail address",
        "  - PublicBaseUrl is missing: the client app's URL, which mailed links point at",
        "  - CryptoGatewayUrl is missing: the crypto gateway's API (CRYPTO_GATEWAY_URL)",
        '  - FxRates is missing: the FX rates, a JSON object like {"USD/BTC": "0.00001047"}',
    ]


@pytest.mark.parametrize(
    ("name", "value", "problem"),
    [
        ("FxRates", '{"USD/USD": "1"}', "not FROM/TO of two different currencies"),
        ("FxRates", "{}", "no rate given"),
        ("FxRates", "[1]", "must be a JSON object"),
        ("CryptoGatewayUrl", "http://gateway.example.com", "is not an https:// URL"),
        ("BackupCopyRegion", "eu-west-1", "another region than the stack's"),
        ("Stage", "prod", "Stage is set by STAGE"),
    ],
)
def test_the_preflight_names_each_malformed_setting(name, value, problem):
    problems = deploy.preflight("prod", "eu-west-1", PARAMETERS | {name: value})

    assert len(problems) == 1
    assert problem in problems[0]
    assert problems[0].startswith(name)


def test_parameters_come_from_a_json_file_and_the_command_line_wins(tmp_path, fake_aws, template):
    file = tmp_path / "prod.json"
    file.write_text(json.dumps(PARAMETERS | {"AlertEmail": "old@clinic.example"}))

    code = deploy.main(
        [
            *("--stage", "dev", "--bucket", "b", "--template", str(template)),
            *("--parameters-file", str(file), "AlertEmail=new@clinic.example"),
        ]
    )

    assert code == 0
    (deployed,) = [c for c in calls(fake_aws) if c[:2] == ["cloudformation", "deploy"]]
    assert "AlertEmail=new@clinic.example" in deployed
    assert f"FxRates={PARAMETERS['FxRates']}" in deployed


def test_preflight_only_checks(fake_aws, capsys):
    code = deploy.main(["--preflight", "--stage", "dev", "--bucket", "b", *arguments(PARAMETERS)])

    assert code == 0
    assert calls(fake_aws) == []


def test_dev_uploads_to_s3_and_deploys_through_a_change_set_then_protects_the_stack(
    fake_aws, template, monkeypatch
):
    monkeypatch.setenv("FAKE_AWS_NEW_STACK", "1")
    asked: list[str] = []

    code = deploy.main(
        [
            *("--stage", "dev", "--bucket", "artifacts", "--template", str(template)),
            *("--region", "eu-west-1", *arguments(PARAMETERS)),
        ],
        ask=lambda prompt: asked.append(prompt) or "n",
    )

    assert code == 0
    assert asked == []  # dev is not asked
    made = calls(fake_aws)
    commands = [" ".join(c[:2]) for c in made]
    assert commands == [
        "cloudformation describe-stacks",
        "cloudformation package",
        "cloudformation list-change-sets",
        "cloudformation deploy",
        "cloudformation list-change-sets",
        "cloudformation describe-change-set",
        "cloudformation execute-change-set",
        "cloudformation wait",
        "cloudformation update-termination-protection",
        "backup update-region-settings",
        "cloudformation describe-stacks",
    ]
    _, package, _, deploy_call, *_ = made
    assert package[package.index("--s3-bucket") + 1] == "artifacts"
    assert deploy_call[deploy_call.index("--s3-bucket") + 1] == "artifacts"
    assert "--no-execute-changeset" in deploy_call
    assert deploy_call[deploy_call.index("--stack-name") + 1] == "ledger-dev"
    assert {"CAPABILITY_IAM", "CAPABILITY_AUTO_EXPAND"} <= set(deploy_call)
    assert "Stage=dev" in deploy_call
    assert made[7][2] == "stack-create-complete"
    assert "--enable-termination-protection" in made[8]
    assert all(c[c.index("--region") + 1] == "eu-west-1" for c in made)


def test_prod_prints_the_change_set_and_a_no_deletes_it(fake_aws, template, capsys):
    code = deploy.main(
        ["--stage", "prod", "--bucket", "b", "--template", str(template), *arguments(PARAMETERS)],
        ask=lambda prompt: "n",
    )

    assert code == 1
    commands = [" ".join(c[:2]) for c in calls(fake_aws)]
    assert "cloudformation describe-change-set" in commands
    assert "cloudformation delete-change-set" in commands
    assert "cloudformation execute-change-set" not in commands
    assert "change set declined" in capsys.readouterr().out


def test_prod_executes_the_change_set_after_a_yes(fake_aws, template):
    code = deploy.main(
        ["--stage", "prod", "--bucket", "b", "--template", str(template), *arguments(PARAMETERS)],
        ask=lambda prompt: "y",
    )

    assert code == 0
    made = calls(fake_aws)
    (executed,) = [c for c in made if c[1] == "execute-change-set"]
    assert "arn:aws:cloudformation:eu-west-1:1:changeSet/awscli-1/abc" in executed
    (waited,) = [c for c in made if c[1] == "wait"]
    assert waited[2] == "stack-update-complete"


def test_a_copy_region_gets_its_vault_stack_with_prods_lock_after_the_change_set(
    fake_aws, template
):
    parameters = PARAMETERS | {"BackupCopyRegion": "eu-central-1", "VaultLockMaxDays": "4000"}

    code = deploy.main(
        [
            *("--stage", "prod", "--yes", "--bucket", "b", "--template", str(template)),
            *("--region", "eu-west-1", *arguments(parameters)),
        ]
    )

    assert code == 0
    made = calls(fake_aws)
    executed = next(i for i, c in enumerate(made) if c[1] == "execute-change-set")
    (vault,) = [c for c in made if "ledger-prod-backup-copy" in c and c[1] == "deploy"]
    assert made.index(vault) > executed  # nothing in the copy region before the answer
    assert vault[vault.index("--region") + 1] == "eu-central-1"
    assert "VaultLockMode=compliance" in vault  # prod's default, though not given
    assert "VaultLockMaxDays=4000" in vault
    settings = [c for c in made if c[:2] == ["backup", "update-region-settings"]]
    assert {c[c.index("--region") + 1] for c in settings} == {"eu-west-1", "eu-central-1"}


def test_a_stack_whose_creation_failed_is_left_alone_with_what_to_do(
    fake_aws, template, monkeypatch, capsys
):
    monkeypatch.setenv("FAKE_AWS_STATUS", "ROLLBACK_COMPLETE")

    code = deploy.main(
        ["--stage", "dev", "--bucket", "b", "--template", str(template), *arguments(PARAMETERS)]
    )

    assert code == 1
    assert [" ".join(c[:2]) for c in calls(fake_aws)] == ["cloudformation describe-stacks"]
    assert "delete-stack --stack-name ledger-dev" in capsys.readouterr().err


def test_make_deploy_checks_the_settings_before_packaging():
    result = subprocess.run(
        ["make", "-n", "deploy", "STAGE=prod", "DEPLOY_BUCKET=b", "PARAMS=MailFrom=x@y.z"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    lines = [line for line in result.stdout.splitlines() if "-m infra." in line]

    assert "infra.deploy --preflight" in lines[0]
    assert "infra.package --stage prod" in lines[1]
    assert "infra.deploy --stage prod" in lines[2]
